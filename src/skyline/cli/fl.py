"""`skyline fl`: federated learning with Flower — simulated (`run`), on local processes (`deploy`), or run
by the edge agents themselves (`start`)."""

from __future__ import annotations

from pathlib import Path

import typer

from skyline.cli.output import console, write_json
from skyline.errors import ConfigError

fl_app = typer.Typer(
    help="Federated learning with Flower (FedAvg, FedProx, DP, SecAgg+).", no_args_is_help=True
)


# Options both commands take: the same apps, trained the same way, in simulation or on real processes.
ALPHA = typer.Option(0.5, help="Dirichlet concentration of the non-IID split (small = skewed).")
STRATEGY = typer.Option("fedavg", help="fedavg or fedprox.")
PROXIMAL_MU = typer.Option(0.01, "--proximal-mu", help="FedProx's μ.")
DATASET = typer.Option("digits", help="digits or fashion-mnist.")
MODEL = typer.Option("mlp", help="Model from the training registry.")
LOCAL_EPOCHS = typer.Option(1, "--local-epochs", help="Epochs each client trains per round.")
BATCH_SIZE = typer.Option(32, "--batch-size", help="Local batch size (expected size under DP-SGD).")
LR = typer.Option(0.05, "--lr", help="Local SGD learning rate (momentum 0.9).")
CLIPPING_NORM = typer.Option(
    None, "--clipping-norm", help="DP clipping norm C (default: 3 per example, 1 per client update)."
)
SEED = typer.Option(0, help="Seed of the split, the models and the training.")
JSON_PATH = typer.Option(None, "--json", help="Write the results here (quiet stdout).")


@fl_app.command("run")
def run(
    clients: int = typer.Option(10, help="Number of clients (Flower SuperNodes)."),
    rounds: int = typer.Option(20, help="Federated rounds."),
    alpha: float = ALPHA,
    strategy: str = STRATEGY,
    proximal_mu: float = PROXIMAL_MU,
    dataset: str = DATASET,
    model: str = MODEL,
    local_epochs: int = LOCAL_EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    clipping_norm: float | None = CLIPPING_NORM,
    secagg: bool = typer.Option(False, "--secagg", help="Secure aggregation (SecAgg+)."),
    dp_epsilon: float | None = typer.Option(
        None, "--dp-epsilon", help="Differential privacy: the ε the whole run may spend (see --dp-unit)."
    ),
    dp_unit: str = typer.Option(
        "record",
        "--dp-unit",
        help="record: DP-SGD on every client protects each training row (δ = 1e-5); client: clipped "
        "updates + server noise protect each client's whole data (δ = 1e-3), useful only with many clients.",
    ),
    seed: int = SEED,
    cpus: int = typer.Option(
        2, help="CPUs given to Ray: one client actor (a Python process) per CPU; 1 starts fastest."
    ),
    json_path: Path | None = JSON_PATH,
) -> None:
    """Run FedAvg/FedProx in Flower's simulation engine and compare with centralized training."""
    from skyline.federated.apps import FederatedConfig
    from skyline.federated.local_training import LocalTraining
    from skyline.federated.simulation import run_federated

    config = FederatedConfig(
        clients=clients,
        rounds=rounds,
        alpha=alpha,
        strategy=strategy,
        proximal_mu=proximal_mu,
        dataset=dataset,
        model=model,
        local=LocalTraining(epochs=local_epochs, batch_size=batch_size, lr=lr),
        secagg=secagg,
        dp_epsilon=dp_epsilon,
        dp_unit=dp_unit,
        clipping_norm=clipping_norm,
        seed=seed,
    )
    if cpus < 1:
        raise ConfigError(f"--cpus must be >= 1, got {cpus}")
    result = run_federated(config, num_cpus=cpus, quiet=json_path is not None)
    if json_path is not None:
        write_json(json_path, result)
        return
    console.print(
        f"rounds: {result['rounds']}  final accuracy: {result['final_accuracy']:.4f}  "
        f"centralized: {result['centralized_accuracy']:.4f}  ε: {result['epsilon']}"
        + (f" ({result['dp_unit']} level, δ = {result['dp_delta']})" if result["dp_unit"] else "")
    )
    console.print("accuracy per round: " + ", ".join(f"{a:.3f}" for a in result["accuracy_per_round"]))


@fl_app.command("deploy")
def deploy(
    clients: int = typer.Option(3, help="SuperNodes to start (each a separate process)."),
    rounds: int = typer.Option(2, help="Federated rounds."),
    alpha: float = ALPHA,
    strategy: str = STRATEGY,
    proximal_mu: float = PROXIMAL_MU,
    dataset: str = DATASET,
    model: str = MODEL,
    local_epochs: int = LOCAL_EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    clipping_norm: float | None = CLIPPING_NORM,
    dp_epsilon: float | None = typer.Option(
        None, "--dp-epsilon", help="Record-level DP (DP-SGD on every node): the ε the run may spend."
    ),
    seed: int = SEED,
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Keep the processes' logs and state here (default: a temporary folder)."
    ),
    json_path: Path | None = JSON_PATH,
) -> None:
    """Run the same apps on Flower's deployment engine: a SuperLink and N SuperNodes as real processes on
    127.0.0.1 (HTTP without TLS, loopback only), driven by ``flwr run``; all stopped at the end."""
    import tempfile

    from skyline.federated.apps import FederatedConfig
    from skyline.federated.local_training import LocalTraining
    from skyline.federated.loopback import LoopbackFederation
    from skyline.federated.simulation import centralized_accuracy

    config = FederatedConfig(
        clients=clients, rounds=rounds, alpha=alpha, strategy=strategy, proximal_mu=proximal_mu,
        dataset=dataset, model=model, local=LocalTraining(epochs=local_epochs, batch_size=batch_size, lr=lr),
        dp_epsilon=dp_epsilon, clipping_norm=clipping_norm, seed=seed,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="skyline-fl-") as scratch:
        folder = workdir if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        with LoopbackFederation(clients, folder) as federation:
            result = federation.run(config)
    result["centralized_accuracy"] = centralized_accuracy(config)
    result["deployment"] = f"flower-superlink + {clients} flower-supernode processes on 127.0.0.1"
    if json_path is not None:
        write_json(json_path, result)
        return
    console.print(
        f"rounds: {result['rounds']}  final accuracy: {result['final_accuracy']:.4f}  "
        f"centralized: {result['centralized_accuracy']:.4f}  ε: {result['epsilon']}  ({result['deployment']})"
    )


@fl_app.command("start")
def start(
    model: str = typer.Option(..., help="The repository model to train on the agents and publish."),
    repo: Path = typer.Option(..., help="The edge cloud's model repository."),
    superlink: str = typer.Option(
        ..., help="The cloud's SuperLink HOST:PORT (skyline edge cloud --superlink-port)."
    ),
    sign_key: Path = typer.Option(..., help="Ed25519 private key that signs the published version."),
    eval_data: Path = typer.Option(
        ..., help="Held-out rows (.npz shards) the aggregated model is evaluated on."
    ),
    agents: int = typer.Option(2, help="Agents (SuperNodes) that take part in every round."),
    rounds: int = typer.Option(3, help="Federated rounds."),
    strategy: str = STRATEGY,
    proximal_mu: float = PROXIMAL_MU,
    local_epochs: int = LOCAL_EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    dp_epsilon: float | None = typer.Option(
        None, "--dp-epsilon", help="Record-level DP: the ε the run may spend."
    ),
    secagg: bool = typer.Option(False, "--secagg", help="Secure aggregation (SecAgg+)."),
    arch: str | None = typer.Option(
        None, help="Architecture to train from scratch (no weights to continue)."
    ),
    num_classes: int | None = typer.Option(
        None, help="Outputs of a fresh --arch model (default: the largest label in --eval-data + 1)."
    ),
    min_accuracy: float | None = typer.Option(None, help="Publish only when this accurate on --eval-data."),
    ca: Path | None = typer.Option(None, "--ca", help="Certificate the SuperLink's TLS must chain to."),
    workdir: Path = typer.Option(Path("runs/fl-start"), help="Where the run's app, logs and weights go."),
    seed: int = SEED,
    json_path: Path | None = JSON_PATH,
) -> None:
    """Federated rounds run by the edge agents (`skyline edge run --fl`) on the data they hold; the aggregated
    model is evaluated, signed and published as the next version (held until `skyline edge rollout`)."""
    from skyline.edge.fleet_training import FleetTrainingConfig, train_on_fleet
    from skyline.federated.local_training import LocalTraining

    config = FleetTrainingConfig(
        repository=repo, model=model, superlink=superlink, private_key=sign_key, eval_data=eval_data,
        workdir=workdir, agents=agents, rounds=rounds, strategy=strategy, proximal_mu=proximal_mu,
        local=LocalTraining(epochs=local_epochs, batch_size=batch_size, lr=lr), dp_epsilon=dp_epsilon,
        secagg=secagg, seed=seed, arch=arch, num_classes=num_classes, min_accuracy=min_accuracy, ca=ca,
    )  # fmt: skip
    result = train_on_fleet(config)
    if json_path is not None:
        write_json(json_path, result)
        return
    published = result["published_version"]
    console.print(
        f"rounds: {result['rounds']}  accuracy: {result['accuracy']:.4f}  ε: {result['epsilon']}  "
        f"{result['round_seconds']:.1f} s per round; "
        + (
            f"published {model} v{published} (held: roll it out with skyline edge rollout {model}:{published})"
            if published is not None
            else f"not published: {result['not_published']}"
        )
    )
