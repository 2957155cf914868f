"""`skyline serve` (the inference server, `pack` a model into a repository) and `skyline bench serve` (load)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from skyline.cli.output import console, write_json
from skyline.errors import ConfigError

serve_app = typer.Typer(
    help="Serve models over the Open Inference Protocol v2 (dynamic batching, model repository).",
    invoke_without_command=True,
    no_args_is_help=False,
)
bench_app = typer.Typer(help="Measure running services.", no_args_is_help=True)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@serve_app.callback()
def serve(
    ctx: typer.Context,
    repo: Path | None = typer.Option(None, help="The model repository folder (<model>/<version>/...)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes (each holds its own copy of every model)."),
    tokens: Path | None = typer.Option(
        None, help="Token file (default: <state>/tokens.json, created with a first admin token)."
    ),
    state: Path | None = typer.Option(
        None, help="Where the server keeps its token file (default: <repo>/.skyline)."
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth-local-only",
        help="No tokens at all: anyone who can connect may do anything. Only with a loopback --host.",
    ),
    public_key: Path | None = typer.Option(None, help="Refuse model versions not signed by this key."),
    tls_cert: Path | None = typer.Option(
        None, help="Serve HTTPS with this PEM certificate (with --tls-key)."
    ),
    tls_key: Path | None = typer.Option(None, help="The certificate's private key (PEM, mode 0600)."),
    audit_log: Path | None = typer.Option(
        None, help="Append every load/unload/index call (who, what, result) to this hash-chained log."
    ),
    rate_limit: float | None = typer.Option(
        None, help="Requests per second per token (burst: 2 s worth), then 429; default unlimited."
    ),
) -> None:
    """Serve every model of --repo until interrupted; bearer tokens are required unless told otherwise."""
    if ctx.invoked_subcommand is not None:
        return
    if repo is None:
        raise ConfigError("give the model repository: skyline serve --repo DIR (see 'skyline serve --help')")
    from skyline.security.tls import uvicorn_ssl_kwargs
    from skyline.serving.repository import ModelRepository
    from skyline.serving.server import serve_forever

    uvicorn_ssl_kwargs(tls_cert, tls_key)  # both or neither, files present, key 0600: fail before loading
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    models = ModelRepository(repo).models()
    if insecure_no_auth:
        _check_no_auth(host, tokens)
    token_file = None if insecure_no_auth else _token_file(repo, tokens, state)
    scheme = "https" if tls else "http"
    console.print(
        f"serving {len(models)} model(s) {models} from {repo} on {scheme}://{host}:{port} ({workers} worker(s))",
        soft_wrap=True,
    )
    serve_forever(
        repo, host=host, port=port, workers=workers, tokens=token_file, public_key=public_key, tls=tls,
        audit_log=audit_log, rate_limit_per_s=rate_limit,
    )  # fmt: skip


def _check_no_auth(host: str, tokens: Path | None) -> None:
    # The Ray/MLflow mistake is an unauthenticated server on a reachable interface: never allowed here.
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"--insecure-no-auth-local-only needs a loopback --host ({', '.join(sorted(LOOPBACK_HOSTS))}), "
            f"not {host!r}; drop the flag to require tokens"
        )
    if tokens is not None:
        raise ConfigError("--tokens and --insecure-no-auth-local-only contradict each other; give one")
    console.print(
        "WARNING: no authentication; any local process may infer, load and unload models", highlight=False
    )


def _token_file(repo: Path, tokens: Path | None, state: Path | None) -> Path:
    """The token file to enforce (created if missing); prints the first admin token once, never again."""
    from skyline.security.tokens import TokenAuthority

    if tokens is None:
        folder = state if state is not None else repo / ".skyline"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tokens = folder / "tokens.json"
    admin = TokenAuthority(tokens).bootstrap_admin()
    if admin is not None:
        console.print(f"admin token (shown once, store it now): {admin}", soft_wrap=True, highlight=False)
    console.print(
        f"bearer tokens required (file {tokens}); add more with "
        f"'skyline token create --tokens {tokens} --role invoker --subject NAME'",
        soft_wrap=True,
        highlight=False,
    )
    return tokens


def _tensor(text: str) -> tuple[str, str, tuple[int, ...]]:
    try:
        name, datatype, dims = text.split(":")
        return name, datatype, (-1, *(int(d) for d in dims.split("x") if d))
    except ValueError:
        raise ConfigError(f"tensor {text!r} must look like NAME:DATATYPE:D1xD2 (e.g. x:FP32:16)") from None


@serve_app.command("pack")
def pack(
    model: Path = typer.Argument(
        ..., help="A model file: .onnx, or a torch.export program (.pt2) with --input/--output."
    ),
    name: str = typer.Option(..., help="Model name in the repository."),
    version: int = typer.Option(..., help="Version number (integer ≥ 1)."),
    repo: Path = typer.Option(..., help="Repository folder (created if missing)."),
    max_batch_size: int = typer.Option(32, help="Most rows in one batch."),
    max_queue_delay_ms: float = typer.Option(2.0, help="Longest a request waits for a batch to fill."),
    instances: int = typer.Option(1, help="Parallel batch workers sharing the model."),
    max_queue_size: int = typer.Option(1024, help="Queued requests before answering 429."),
    preferred_batch_size: list[int] = typer.Option([], help="A batch size to dispatch at once (repeatable)."),
    input_spec: list[str] = typer.Option([], "--input", help="NAME:DATATYPE:D1xD2 (.pt2 only)."),
    output_spec: list[str] = typer.Option([], "--output", help="NAME:DATATYPE:D1xD2 (.pt2 only)."),
    dynamic_size: int | None = typer.Option(
        None, help="Size for dynamic non-batch dimensions (sequence length)."
    ),
    sign_key: Path | None = typer.Option(None, help="Ed25519 private key: also write a signed manifest."),
    split: bool = typer.Option(
        False, "--split", help="Also cut the ONNX graph into segments (split inference)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the manifest here."),
) -> None:
    """Add MODEL to the repository as NAME/VERSION with its manifest (sha256, inputs, outputs, batching)."""
    from skyline.serving.batching import BatchingConfig
    from skyline.serving.repository import ModelRepository
    from skyline.serving.tensors import TensorSpec

    batching = BatchingConfig(
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        instances=instances,
        max_queue_size=max_queue_size,
        preferred_batch_sizes=tuple(preferred_batch_size),
    )
    specs = [
        tuple(TensorSpec(name=n, datatype=d, shape=s) for n, d, s in map(_tensor, group)) or None
        for group in (input_spec, output_spec)
    ]
    repo.mkdir(parents=True, exist_ok=True)
    repository = ModelRepository(repo)
    manifest = repository.add(
        model, name=name, version=version, inputs=specs[0], outputs=specs[1], batching=batching,
        dynamic_size=dynamic_size, split=split,
    )  # fmt: skip
    if sign_key is not None:
        from skyline.security.signing import sign_directory

        sign_directory(repository.version_dir(name, version), sign_key, version=version)
    if json_out is not None:
        write_json(json_out, manifest.to_json())
    else:
        console.print(
            f"packed {model} as {name} version {version} in {repo} (sha256 {manifest.sha256[:16]}…)",
            soft_wrap=True,
        )


@bench_app.command("serve")
def bench_serve(
    url: str = typer.Option(..., help="Base URL of an OIP v2 server, e.g. http://127.0.0.1:8000."),
    model: str = typer.Option(..., help="Model name."),
    concurrency: int = typer.Option(8, help="Client workers, each with its own connection."),
    duration: float = typer.Option(10.0, help="Seconds of load."),
    rate: float | None = typer.Option(
        None, help="Open loop: requests per second (Poisson); default closed loop."
    ),
    token: str | None = typer.Option(None, help="Bearer token, if the server requires one."),
    ca: Path | None = typer.Option(
        None, help="For https:// URLs: trust this CA (e.g. the server's self-signed certificate)."
    ),
    request: Path | None = typer.Option(
        None, help="Send this OIP request body (default: one synthesized row)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here (quiet stdout)."),
) -> None:
    """Load an inference server with one-row requests; report throughput, latency and batch sizes."""
    from skyline.serving.loadgen import fetch_metadata, run_load, synthesize_body

    headers = {"authorization": f"Bearer {token}"} if token else {}
    context = None
    if url.startswith("https://") or ca is not None:
        from skyline.security.tls import client_ssl_context

        context = client_ssl_context(ca)  # always verified; the system CAs when no --ca

    async def measure() -> dict[str, object]:
        if request is not None:
            try:
                body = request.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read request body {request}: {exc.strerror}") from exc
        else:
            body = synthesize_body(await fetch_metadata(url, model, headers, context))
        result = await run_load(
            url, path=f"/v2/models/{model}/infer", body=body, concurrency=concurrency,
            duration_s=duration, rate_per_s=rate, headers=headers, model=model, ssl_context=context,
        )  # fmt: skip
        return result.to_json()

    payload = asyncio.run(measure())
    if json_out is not None:
        write_json(json_out, payload)
        return
    for key, value in payload.items():
        console.print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
