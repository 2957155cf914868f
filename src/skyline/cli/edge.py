"""`skyline edge`: the edge agent, the edge cloud, the fleet and its rollouts, and the collaboration
evaluations. Each command builds a config, calls `skyline.edge` and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from skyline.cli.output import console, progress, write_json
from skyline.errors import ConfigError

edge_app = typer.Typer(
    help="Edge agents, the edge cloud, the fleet, staged rollouts, cascade and split inference.",
    no_args_is_help=True,
)
EVAL_STRATEGIES = ("cascade", "split")
JSON_PATH = typer.Option(None, "--json", help="Write the results here (quiet stdout).")
CLOUD = typer.Option(..., help="The cloud's base URL, e.g. http://127.0.0.1:8500.")
CA = typer.Option(None, "--ca", envvar="SKYLINE_CA", help="Certificate that the cloud's HTTPS must chain to.")
ADMIN_TOKEN = typer.Option(..., envvar="SKYLINE_TOKEN", help="Bearer token of the cloud (or $SKYLINE_TOKEN).")
AGENT_TOKEN = typer.Option(
    ...,
    envvar="SKYLINE_EDGE_TOKEN",
    help="This agent's own edge token, issued to its --name (or $SKYLINE_EDGE_TOKEN).",
)
AGENT_NAME = typer.Option(
    "edge-agent", help="This agent's name in the fleet: the subject its --token was issued to."
)
LOCAL_TOKENS = typer.Option(None, help="Token file of the local API (default STORE/local-tokens.json).")
LLM_CLOUD = typer.Option(None, help="Also serve an LLM here, routed against this cloud LLM URL.")
LLM_QUANT = typer.Option(
    "int8", help="With --llm-cloud: its quantization (none, int8, int4; int8 keeps float32's answers best)."
)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``["site=paris", ...]`` as a dict (`ConfigError` for an entry without ``=``)."""
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key or not item:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {value!r}")
        pairs[key] = item
    return pairs


def _render(result: dict[str, Any], json_path: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, result)
        return
    for key, value in result.items():
        console.print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


@edge_app.command("eval")
def evaluate(
    strategy: str = typer.Option(..., help="cascade or split."),
    dataset: str = typer.Option("digits", help="Cascade: digits or fashion-mnist."),
    target_offload: float | None = typer.Option(
        None, help="Cascade: fraction sent to the cloud (default 0.15)."
    ),
    target_accuracy: float | None = typer.Option(None, help="Cascade: least offload reaching this accuracy."),
    method: str = typer.Option("margin", help="Cascade: hardness score (max-prob, margin, entropy)."),
    epochs: int = typer.Option(20, help="Cascade: training epochs of the edge and cloud models."),
    repo: Path | None = typer.Option(None, help="Split: the repository holding the splittable model."),
    model: str | None = typer.Option(None, help="Split: the model's name (packed with --split)."),
    version: int | None = typer.Option(None, help="Split: its version (default: the newest)."),
    public_key: Path | None = typer.Option(
        None, help="Split: the key that signs the model (both sides verify)."
    ),
    bandwidth_mbps: float | None = typer.Option(None, help="Split: link bandwidth (Mbit/s)."),
    rtt_ms: float = typer.Option(10.0, help="Split/cascade: link round-trip time (ms)."),
    int8: bool = typer.Option(False, "--int8", help="Split: send int8 activations."),
    emulated_edge_slowdown: float = typer.Option(
        10.0, help="Split: the EMULATED edge device is this much slower than this host (a wait, eval only)."
    ),
    test_data: Path | None = typer.Option(None, help="Split: a folder of shards answered split and unsplit."),
    seed: int = typer.Option(0, help="Cascade: seed of data split and models."),
    json_path: Path | None = JSON_PATH,
) -> None:
    """Measure a collaboration strategy end to end over an emulated link on 127.0.0.1."""
    if strategy not in EVAL_STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(EVAL_STRATEGIES)}, got {strategy!r}")
    quiet = json_path is not None
    if strategy == "cascade":
        result = _cascade(dataset, target_offload, target_accuracy, method, rtt_ms, seed, epochs, quiet=quiet)
    else:
        from skyline.edge.split_eval import SplitEvalConfig, evaluate_split

        if bandwidth_mbps is None or repo is None or model is None or public_key is None:
            raise ConfigError("--strategy split needs --repo, --model, --public-key and --bandwidth-mbps")
        config = SplitEvalConfig(
            repository=repo, model=model, version=version, public_key=public_key, bandwidth_mbps=bandwidth_mbps,
            rtt_ms=rtt_ms, int8=int8, emulated_edge_slowdown=emulated_edge_slowdown, test_data=test_data,
        )  # fmt: skip
        with progress("split: measuring every cut", config.repeats - 1, enabled=not quiet) as advance:
            result = evaluate_split(config, advance=advance)
        result.pop("details")
    _render(result, json_path)


def _cascade(
    dataset: str,
    target_offload: float | None,
    target_accuracy: float | None,
    method: str,
    rtt_ms: float,
    seed: int,
    epochs: int,
    *,
    quiet: bool,
) -> dict[str, Any]:
    from skyline.edge.cascade_eval import CascadeEvalConfig, evaluate_cascade
    from skyline.edge.link import LinkConditions

    if target_offload is None and target_accuracy is None:
        target_offload = 0.15
    config = CascadeEvalConfig(
        dataset=dataset, target_offload=target_offload, target_accuracy=target_accuracy, method=method, seed=seed,
        epochs=epochs, link=LinkConditions(latency_ms=rtt_ms / 2, bandwidth_mbps=100.0),
    )  # fmt: skip
    with progress("cascade: test inputs", None, enabled=not quiet) as advance:
        return evaluate_cascade(config, advance=advance)


@edge_app.command("run")
def run(
    cloud: str = CLOUD,
    token: str = AGENT_TOKEN,
    model: str = typer.Option(..., help="Model name in the cloud's repository."),
    public_key: Path = typer.Option(..., help="Ed25519 public key that signs the models."),
    strategy: str = typer.Option("local", help="local, cascade, split or cloud."),
    name: str = AGENT_NAME,
    label: list[str] = typer.Option([], help="A label KEY=VALUE (repeatable): site=paris, hardware=rpi4."),
    store: Path = typer.Option(Path("runs/edge-agent"), help="Where models, data and the uplink queue live."),
    data: Path | None = typer.Option(None, help="Training data (.npz shards; default STORE/data)."),
    fl: bool = typer.Option(False, "--fl", help="Run a Flower SuperNode that trains on this agent's data."),
    superlink: str | None = typer.Option(None, help="With --fl: the cloud's SuperLink HOST:PORT."),
    port: int = typer.Option(0, help="Port of the local inference API on 127.0.0.1 (0: any free port)."),
    cloud_model: str = typer.Option("cloud-classifier", help="Cascade/cloud: the cloud's model."),
    threshold: float = typer.Option(0.5, help="Cascade: hardness above which inputs go to the cloud."),
    poll_s: float = typer.Option(5.0, help="Seconds between checks of the fleet's version."),
    telemetry_s: float = typer.Option(5.0, help="Seconds between telemetry reports."),
    probe_s: float = typer.Option(30.0, help="Split: seconds between link measurements."),
    int8: bool = typer.Option(False, "--int8", help="Split: send int8 activations."),
    duration_s: float | None = typer.Option(None, help="Stop after this many seconds."),
    tokens: Path | None = LOCAL_TOKENS,
    ca: Path | None = CA,
    tls_cert: Path | None = typer.Option(None, help="Serve the local API over HTTPS with this certificate."),
    tls_key: Path | None = typer.Option(None, help="The certificate's key (PEM, 0600)."),
    llm_cloud: str | None = LLM_CLOUD,
    llm_cloud_model: str = typer.Option("smollm2-135m", help="With --llm-cloud: the cloud's LLM model name."),
    llm_cloud_token: str | None = typer.Option(None, envvar="SKYLINE_LLM_TOKEN", help="Its token."),
    llm_model: str = typer.Option("smollm2-135m", help="With --llm-cloud: the LLM served here."),
    llm_quant: str = LLM_QUANT,
) -> None:
    """Run an edge agent: the fleet's version of its model (verified), a local inference API, a strategy
    with the cloud, labelled records, uplink, telemetry, with --fl federated learning, and with --llm-cloud
    an LLM answered here or in the cloud (OpenAI API)."""
    from skyline.edge.agent import AgentConfig, FederatedNode
    from skyline.edge.agent_app import EdgeLLM, serve_forever
    from skyline.security.tls import uvicorn_ssl_kwargs

    uvicorn_ssl_kwargs(tls_cert, tls_key)  # both or neither, key 0600: fail before starting
    if fl != (superlink is not None):
        raise ConfigError("--fl and --superlink HOST:PORT go together")
    config = AgentConfig(
        cloud_url=cloud, token=token, model=model, store=store, public_key=public_key, strategy=strategy,
        cloud_model=cloud_model, threshold=threshold, poll_s=poll_s, telemetry_s=telemetry_s, ca=ca, int8=int8,
        probe_s=probe_s, name=name, labels=_pairs(label, "--label"), data=data,
        federated=FederatedNode(superlink=superlink, ca=ca) if superlink is not None else None,
    )  # fmt: skip
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    llm = None if llm_cloud is None else EdgeLLM(
        cloud_url=llm_cloud, cloud_model=llm_cloud_model, cloud_token=llm_cloud_token, model=llm_model, quant=llm_quant
    )  # fmt: skip
    serve_forever(
        config, tokens=tokens or store / "local-tokens.json", port=port, tls=tls, duration_s=duration_s,
        announce=console.print, llm=llm,
    )  # fmt: skip


@edge_app.command("cloud")
def cloud(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8500, help="Port to listen on."),
    repository: Path = typer.Option(Path("runs/edge-cloud/repository"), help="The signed model repository."),
    public_key: Path | None = typer.Option(
        None, help="Serve only versions signed by this key (split needs it)."
    ),
    tokens: Path = typer.Option(
        Path("runs/edge-cloud/tokens.json"), help="Token file (prints a first admin token)."
    ),
    ingest: Path = typer.Option(Path("runs/edge-cloud/ingest.db"), help="Where uplinked records land."),
    superlink_port: int | None = typer.Option(
        None, help="Also run a Flower SuperLink on this port (0: any)."
    ),
    tls_cert: Path | None = typer.Option(
        None, help="Serve HTTPS (and the SuperLink's TLS) with this certificate."
    ),
    tls_key: Path | None = typer.Option(None, help="The certificate's key (PEM, 0600)."),
    audit_log: Path | None = typer.Option(None, help="Hash-chained audit log of the state-changing calls."),
    rate_limit: float | None = typer.Option(None, help="Requests per second per token (burst: 2 s worth)."),
) -> None:
    """Run the edge cloud: the inference server over the repository, uplink ingestion, signed model
    downloads, split tails, telemetry, the fleet and its rollouts, and optionally a SuperLink."""
    from skyline.edge.cloud import CloudConfig, serve_forever
    from skyline.security.tls import uvicorn_ssl_kwargs
    from skyline.security.tokens import TokenAuthority

    uvicorn_ssl_kwargs(tls_cert, tls_key)
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    config = CloudConfig(
        repository=repository, tokens=tokens, ingest=ingest, host=host, port=port, public_key=public_key, tls=tls,
        audit_log=audit_log, rate_limit_per_s=rate_limit, superlink_port=superlink_port,
    )  # fmt: skip
    admin_token = TokenAuthority(tokens).bootstrap_admin()
    if admin_token is not None:
        console.print(f"admin token (shown once, store it now): {admin_token}")
    serve_forever(config, announce=console.print)


@edge_app.command("fleet")
def fleet(
    cloud: str = CLOUD, token: str = ADMIN_TOKEN, ca: Path | None = CA, json_path: Path | None = JSON_PATH
) -> None:
    """List the agents: labels, health, the version each serves and should serve, uplink backlog."""
    from rich.table import Table

    from skyline.edge.fleet_client import FleetClient

    client = FleetClient(cloud, token=token, ca=ca)
    try:
        agents = client.agents()
    finally:
        client.close()
    if json_path is not None:
        write_json(json_path, {"agents": agents})
        return
    table = Table("agent", "labels", "health", "model: version (desired)", "uplink backlog", "answered")
    for a in agents:
        labels = ",".join(f"{k}={v}" for k, v in a["labels"].items())
        versions = " ".join(f"{m}: {v['version']} ({v['desired']})" for m, v in a["models"].items())
        table.add_row(a["agent"], labels, a["health"], versions, str(a["uplink_backlog"]), str(a["answered"]))
    console.print(table)


@edge_app.command("rollout")
def rollout(
    target: str = typer.Argument(..., help="NAME:VERSION to roll out."),
    cloud: str = CLOUD,
    token: str = ADMIN_TOKEN,
    canary: str = typer.Option("10%", help="The first wave, a fraction of the matching agents."),
    steps: str = typer.Option("10%,50%,100%", help="Cumulative fractions after each wave, ending at 100%."),
    max_error_increase: float = typer.Option(0.05, help="Roll back when the error rate grows by more."),
    min_accuracy: float | None = typer.Option(
        None, help="Roll back below this accuracy on labelled records."
    ),
    max_latency_increase_ms: float | None = typer.Option(
        None, help="Roll back when median latency grows more."
    ),
    min_samples: int = typer.Option(20, help="Answers (and labelled records) a wave needs for a verdict."),
    bake_s: float = typer.Option(30.0, help="Least seconds a healthy wave runs before the next starts."),
    wave_timeout_s: float = typer.Option(600.0, help="Roll back a wave with no verdict after this long."),
    selector: list[str] = typer.Option([], help="Only agents with this label KEY=VALUE (repeatable)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the rollout until it has finished."),
    ca: Path | None = CA,
    json_path: Path | None = JSON_PATH,
) -> None:
    """Move a model version through waves of agents; a wave that regresses is rolled back automatically."""
    from skyline.edge.fleet_client import FleetClient
    from skyline.edge.rollout import RolloutSpec, parse_fraction

    name, _, version = target.rpartition(":")
    if not name or not version.isdigit():
        raise ConfigError(f"give the version as NAME:VERSION, got {target!r}")
    spec = RolloutSpec(
        model=name, version=int(version), canary=parse_fraction(canary),
        steps=tuple(parse_fraction(s) for s in steps.split(",")), max_error_increase=max_error_increase,
        min_accuracy=min_accuracy, max_latency_increase_ms=max_latency_increase_ms, min_samples=min_samples,
        bake_s=bake_s, wave_timeout_s=wave_timeout_s, selector=_pairs(selector, "--selector"),
    )  # fmt: skip
    client = FleetClient(cloud, token=token, ca=ca)
    try:
        record = client.start(spec)
        quiet = json_path is not None or not wait
        if wait:
            record = client.follow(record["id"], on_event=(lambda _: None) if quiet else console.print)
    finally:
        client.close()
    _render({k: record[k] for k in ("id", "model", "version", "previous", "state", "reason")}, json_path)
    if record["state"] == "rolled-back":
        raise typer.Exit(1)
