"""Running the inference server: in the foreground with W worker processes, or in a background thread.

With ``workers > 1`` uvicorn forks processes that each build the app from environment variables (each
worker loads its own copy of every model and gets ``cores // workers`` cores in its thread plan).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI

from skyline.errors import ConfigError, UnavailableError
from skyline.security.tls import uvicorn_ssl_kwargs
from skyline.security.tokens import TokenAuthority
from skyline.serving.app import create_app

_ENV_REPO, _ENV_TOKENS, _ENV_KEY, _ENV_CORES, _ENV_AUDIT, _ENV_RATE = (
    "SKYLINE_SERVE_REPO",
    "SKYLINE_SERVE_TOKENS",
    "SKYLINE_SERVE_PUBLIC_KEY",
    "SKYLINE_SERVE_CORES",
    "SKYLINE_SERVE_AUDIT_LOG",
    "SKYLINE_SERVE_RATE_LIMIT",
)
TlsPair = tuple[Path, Path]  # (certificate, private key), PEM files


def app_from_env() -> FastAPI:
    """The app a uvicorn worker process builds (``skyline.serving.server:app_from_env``, factory)."""
    tokens, key, cores = os.environ.get(_ENV_TOKENS), os.environ.get(_ENV_KEY), os.environ.get(_ENV_CORES)
    audit, rate = os.environ.get(_ENV_AUDIT), os.environ.get(_ENV_RATE)
    return create_app(
        Path(os.environ[_ENV_REPO]),
        authority=TokenAuthority(Path(tokens)) if tokens else None,
        public_key=Path(key) if key else None,
        cores=int(cores) if cores else None,
        audit_log=Path(audit) if audit else None,
        rate_limit_per_s=float(rate) if rate else None,
    )


def serve_forever(
    repo: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    tokens: Path | None = None,
    public_key: Path | None = None,
    tls: TlsPair | None = None,
    audit_log: Path | None = None,
    rate_limit_per_s: float | None = None,
) -> None:
    """Serve ``repo`` until interrupted (uvicorn with uvloop and httptools); ``tokens`` None = no auth
    (the CLI only allows that on loopback), ``tls`` = (certificate, key) to serve HTTPS only."""
    import uvicorn

    if workers < 1:
        raise ConfigError(f"workers is {workers}; it must be ≥ 1")
    ssl_kwargs = uvicorn_ssl_kwargs(*tls) if tls is not None else {}
    os.environ[_ENV_REPO] = str(Path(repo).resolve())
    os.environ[_ENV_CORES] = str(max(1, (os.cpu_count() or 1) // workers))
    for name, value in ((_ENV_TOKENS, tokens), (_ENV_KEY, public_key), (_ENV_AUDIT, audit_log)):
        if value is not None:
            os.environ[name] = str(Path(value).resolve())
        else:
            os.environ.pop(name, None)  # an inherited variable must not switch auth or audit on or off
    if rate_limit_per_s is not None:
        if not rate_limit_per_s > 0 or tokens is None:
            raise ConfigError(f"--rate-limit {rate_limit_per_s} needs tokens and a positive rate")
        os.environ[_ENV_RATE] = repr(rate_limit_per_s)
    else:
        os.environ.pop(_ENV_RATE, None)
    uvicorn.run(
        "skyline.serving.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        ws="none",
        access_log=False,
        log_level="warning",
        **ssl_kwargs,  # type: ignore[arg-type]
    )


@contextmanager
def background_server(
    app: FastAPI, *, host: str = "127.0.0.1", timeout_s: float = 60.0, tls: TlsPair | None = None
) -> Iterator[str]:
    """Run ``app`` on a free port in a thread; yield its base URL once it is started; stop it after.

    With ``tls`` (certificate, key) it serves HTTPS only and the URL starts with ``https://``."""
    import uvicorn

    ssl_kwargs = uvicorn_ssl_kwargs(*tls) if tls is not None else {}
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, loop="uvloop", http="httptools", ws="none",
        **ssl_kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise UnavailableError(f"the server did not start within {timeout_s} s")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls is not None else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()
