"""`skyline edge`: the edge agent and the edge–cloud collaboration evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from skyline.cli.output import console, progress, write_json
from skyline.errors import ConfigError

edge_app = typer.Typer(
    help="Edge agent and edge–cloud collaboration (cascade, split, uplink).", no_args_is_help=True
)
EVAL_STRATEGIES = ("cascade", "split")


@edge_app.command("eval")
def evaluate(
    strategy: str = typer.Option(..., help="cascade or split."),
    dataset: str = typer.Option("digits", help="Cascade: digits or fashion-mnist."),
    target_offload: float | None = typer.Option(
        None, "--target-offload", help="Cascade: fraction sent to the cloud (default 0.15)."
    ),
    target_accuracy: float | None = typer.Option(
        None, "--target-accuracy", help="Cascade: least offload reaching this accuracy."
    ),
    method: str = typer.Option("margin", help="Cascade: hardness score (max-prob, margin, entropy)."),
    bandwidth_mbps: float | None = typer.Option(
        None, "--bandwidth-mbps", help="Split: link bandwidth (Mbit/s)."
    ),
    rtt_ms: float = typer.Option(10.0, "--rtt-ms", help="Split/cascade: link round-trip time (ms)."),
    int8: bool = typer.Option(False, "--int8", help="Split: send int8 activations."),
    edge_slowdown: float = typer.Option(
        10.0, "--edge-slowdown", help="Split: how much slower the edge computes."
    ),
    network: str = typer.Option("split-vgg", help="Split: split-vgg or split-patchify."),
    seed: int = typer.Option(0, help="Seed of data split and models."),
    epochs: int = typer.Option(20, help="Cascade: training epochs of the edge and cloud models."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results here (quiet stdout)."),
) -> None:
    """Measure a collaboration strategy end to end over an emulated link on 127.0.0.1."""
    if strategy not in EVAL_STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(EVAL_STRATEGIES)}, got {strategy!r}")
    if strategy == "cascade":
        result = _cascade(
            dataset,
            target_offload,
            target_accuracy,
            method,
            rtt_ms,
            seed,
            epochs,
            quiet=json_path is not None,
        )
    else:
        if bandwidth_mbps is None:
            raise ConfigError("--strategy split needs --bandwidth-mbps (for example 10)")
        result = _split(
            bandwidth_mbps, rtt_ms, int8, edge_slowdown, network, seed, quiet=json_path is not None
        )
    if json_path is not None:
        write_json(json_path, result)
        return
    for key, value in result.items():
        console.print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


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
        dataset=dataset,
        target_offload=target_offload,
        target_accuracy=target_accuracy,
        method=method,
        seed=seed,
        epochs=epochs,
        link=LinkConditions(latency_ms=rtt_ms / 2, bandwidth_mbps=100.0),
    )
    with progress("cascade: test inputs", None, enabled=not quiet) as advance:
        return evaluate_cascade(config, advance=advance)


def _split(
    bandwidth_mbps: float,
    rtt_ms: float,
    int8: bool,
    edge_slowdown: float,
    network: str,
    seed: int,
    *,
    quiet: bool,
) -> dict[str, Any]:
    from skyline.edge.split_eval import SplitEvalConfig, evaluate_split

    config = SplitEvalConfig(
        bandwidth_mbps=bandwidth_mbps,
        network=network,
        rtt_ms=rtt_ms,
        int8=int8,
        edge_slowdown=edge_slowdown,
        seed=seed,
    )
    with progress("split: measuring every cut", config.repeats - 1, enabled=not quiet) as advance:
        result = evaluate_split(config, advance=advance)
    result.pop("details")
    return result


@edge_app.command("run")
def run(
    cloud: str = typer.Option(..., help="The cloud's base URL, e.g. http://127.0.0.1:8500."),
    token: str = typer.Option(
        ..., envvar="SKYLINE_EDGE_TOKEN", help="Bearer token (or $SKYLINE_EDGE_TOKEN)."
    ),
    model: str = typer.Option(
        ..., help="Model name in the cloud's repository (split: split-vgg or split-patchify)."
    ),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="Ed25519 public key that signs the models (required unless split)."
    ),
    strategy: str = typer.Option("local", help="local, cascade, split or cloud."),
    store: Path = typer.Option(Path("runs/edge-agent"), help="Where models and the uplink queue live."),
    port: int = typer.Option(0, help="Port of the local inference API on 127.0.0.1 (0: any free port)."),
    cloud_model: str = typer.Option(
        "cloud-classifier", "--cloud-model", help="Cloud model for cascade/cloud."
    ),
    threshold: float = typer.Option(0.5, help="Cascade: hardness above which inputs go to the cloud."),
    poll_s: float = typer.Option(5.0, "--poll-s", help="Seconds between repository checks."),
    duration_s: float | None = typer.Option(None, "--duration-s", help="Stop after this many seconds."),
    tokens: Path | None = typer.Option(
        None,
        "--tokens",
        help="Token file of the local API (default: STORE/local-tokens.json); its first start prints an "
        "admin token once; make invoker tokens with 'skyline token create --tokens FILE --role invoker'.",
    ),
    ca: Path | None = typer.Option(
        None, "--ca", envvar="SKYLINE_CA", help="Certificate that the cloud's HTTPS must chain to."
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="Serve the local API over HTTPS with this certificate."
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="The certificate's key (PEM, 0600)."),
    int8: bool = typer.Option(False, "--int8", help="Split: send int8 activations."),
    edge_slowdown: float = typer.Option(
        10.0, "--edge-slowdown", help="Split: how much slower the emulated edge computes than this host."
    ),
    probe_s: float = typer.Option(30.0, "--probe-s", help="Split: seconds between link measurements."),
) -> None:
    """Run the edge agent: verified model updates, local inference API, cascade or split inference with the
    cloud, uplink and telemetry."""
    import signal
    import threading

    import uvicorn

    from skyline.edge.agent import AgentConfig, EdgeAgent
    from skyline.edge.agent_app import create_agent_app
    from skyline.security.tls import uvicorn_ssl_kwargs
    from skyline.security.tokens import TokenAuthority

    ssl_kwargs = uvicorn_ssl_kwargs(tls_cert, tls_key)  # both or neither, key 0600: fail before starting
    config = AgentConfig(
        cloud_url=cloud,
        token=token,
        model=model,
        store=store,
        public_key=public_key,
        strategy=strategy,
        cloud_model=cloud_model,
        threshold=threshold,
        poll_s=poll_s,
        ca=ca,
        int8=int8,
        edge_slowdown=edge_slowdown,
        probe_s=probe_s,
    )
    if public_key is not None and strategy != "split" and not public_key.is_file():
        raise ConfigError(
            f"--public-key {public_key} is not a file; pass the key that signs the cloud's models"
        )
    authority = TokenAuthority(tokens or store / "local-tokens.json")
    admin_token = authority.bootstrap_admin()
    if admin_token is not None:
        console.print(f"local API admin token (shown once, store it now): {admin_token}")
    agent = EdgeAgent(config).start()
    app = create_agent_app(agent, authority=authority)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            **ssl_kwargs,  # type: ignore[arg-type]
        )
    )
    # uvicorn in a thread; the main thread owns the signals, so SIGTERM/SIGINT stop everything cleanly.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.run, name="edge-agent-api", daemon=True)
    thread.start()
    console.print(f"edge agent {config.name}: model {model}, strategy {strategy}, store {store}, port {port}")
    try:
        stop.wait(timeout=duration_s)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        agent.stop()
    console.print("edge agent stopped")


@edge_app.command("cloud")
def cloud(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8500, help="Port to listen on."),
    tokens: Path = typer.Option(
        Path("runs/edge-cloud/tokens.json"),
        help="Token file; its first start prints an admin token once ('skyline token create --role edge').",
    ),
    ingest: Path = typer.Option(Path("runs/edge-cloud/ingest.db"), help="Where uplinked records land."),
    repository: Path | None = typer.Option(
        None, help="Model repository (MODEL/VERSION/*.onnx, signed) that agents pull and the cloud serves."
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="The certificate's key (PEM, 0600)."),
    audit_log: Path | None = typer.Option(
        None, "--audit-log", help="Hash-chained audit log of uplink and telemetry calls."
    ),
    rate_limit: float | None = typer.Option(
        None, "--rate-limit", help="Requests per second per token (burst: 2 s worth); off by default."
    ),
) -> None:
    """Run the cloud side that edge agents talk to: uplink, model downloads, inference, telemetry."""
    import uvicorn

    from skyline.edge.cloud_app import create_cloud_app
    from skyline.edge.ingest import IngestStore
    from skyline.security.tls import uvicorn_ssl_kwargs
    from skyline.security.tokens import TokenAuthority

    ssl_kwargs = uvicorn_ssl_kwargs(tls_cert, tls_key)
    if rate_limit is not None and not rate_limit > 0:
        raise ConfigError(f"--rate-limit must be > 0 requests/s, got {rate_limit}")
    authority = TokenAuthority(tokens)
    admin_token = authority.bootstrap_admin()
    if admin_token is not None:
        console.print(f"admin token (shown once, store it now): {admin_token}")
    app = create_cloud_app(
        ingest=IngestStore(ingest),
        authority=authority,
        models=_latest_models(repository),
        tails=_split_tails(),
        repository=repository,
        audit_log=audit_log,
        rate_limit_per_s=rate_limit,
    )
    scheme = "https" if ssl_kwargs else "http"
    console.print(f"edge cloud on {scheme}://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="none", **ssl_kwargs)  # type: ignore[arg-type]


def _split_tails() -> dict[str, Any]:
    """The tails of every built-in split network (seed 0, as the agents build them)."""
    from skyline.edge.split import SPLIT_NETWORKS, tail_runner

    return {name: tail_runner(network.build(seed=0)) for name, network in SPLIT_NETWORKS.items()}


def _latest_models(repository: Path | None) -> dict[str, Any]:
    """The newest version of every model in ``repository`` as an ONNX Runtime classifier."""
    from skyline.edge.agent import LocalModel

    models: dict[str, Any] = {}
    for folder in sorted(repository.iterdir()) if repository is not None and repository.is_dir() else []:
        versions = sorted((int(v.name), v) for v in folder.iterdir() if v.name.isdigit() and v.is_dir())
        if versions and any(versions[-1][1].glob("*.onnx")):
            models[folder.name] = LocalModel(versions[-1][1], versions[-1][0]).predict
    return models
