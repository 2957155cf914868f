"""Running a server: the inference server in the foreground with W worker processes, or any ASGI app in a
background thread (`BackgroundServer`, the one helper every package uses).

With ``workers > 1`` uvicorn forks processes that each build the app from environment variables (each
worker loads its own copy of every model and gets ``cores // workers`` cores in its thread plan).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyline.errors import ConfigError, UnavailableError
from skyline.security.tls import uvicorn_ssl_kwargs

if TYPE_CHECKING:
    from fastapi import FastAPI

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
    from skyline.security.tokens import TokenAuthority
    from skyline.serving.app import create_app

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


class BackgroundServer:
    """An ASGI app served by uvicorn on a thread of this process, the one way skyline runs a server in the
    background: ``with BackgroundServer(app) as server: httpx.get(server.url + "/v2/health/ready")``.

    ``url`` and ``port`` are known at once (``port=0``: a free port; a taken one is a `ConfigError`). With
    ``tls`` (certificate, key) it serves HTTPS only. The app's lifespan has run when `start` returns.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsPair | None = None,
        start_timeout_s: float = 20.0,
        keep_alive_s: int = 5,
    ) -> None:
        import uvicorn

        ssl_kwargs = uvicorn_ssl_kwargs(*tls) if tls is not None else {}
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"{'https' if tls is not None else 'http'}://{host}:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, loop="uvloop", http="httptools", ws="none",
            timeout_keep_alive=keep_alive_s, **ssl_kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        # Server.run installs uvloop: a plain asyncio loop on a thread answered ~50 ms slower.
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._start_timeout_s = start_timeout_s

    def start(self) -> BackgroundServer:
        """Start serving; return once the server accepts connections (`UnavailableError` if it cannot)."""
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UnavailableError(
                    f"the server on {self.url} did not start within {self._start_timeout_s} s"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop accepting, finish the requests in flight (the app's shutdown runs), release the port."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=max(10.0, self._start_timeout_s))
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def bind_socket(host: str, port: int, *, flag: str = "--port") -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), not yet listening; a taken port is a
    `ConfigError` that names the option (``flag``) to change."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another {flag}") from exc
    return sock


def wait_for_stop_signal(timeout_s: float | None = None) -> None:
    """Block the main thread until SIGTERM or SIGINT arrives (or ``timeout_s`` passes).

    The part of a foreground command whose servers run on threads (`BackgroundServer`): the main thread
    owns the signals, so a signal ends the wait and the caller stops everything in order afterwards.
    """
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        stop.wait(timeout=timeout_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
