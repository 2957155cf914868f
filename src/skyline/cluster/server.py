"""Assembling and running a control plane: store + executor + policy + loop + API on uvicorn.

`ServerConfig` says what to run; `build` wires it; `ServerThread` runs it inside this process (tests,
the demo, benchmarks); ``skyline cluster up`` runs it in the foreground.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from skyline.cluster.agent_executor import AgentExecutor
from skyline.cluster.api import create_app
from skyline.cluster.clock import WallClock
from skyline.cluster.control import ClusterExecutor, ControlConfig, ControlPlane
from skyline.cluster.node_store import Store
from skyline.core.net import PortRange
from skyline.errors import ConfigError, UnavailableError
from skyline.scheduling.policies import POLICIES, make_policy
from skyline.security.tls import uvicorn_ssl_kwargs
from skyline.security.tokens import TokenAuthority

EXECUTORS = ("local", "ray")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """A control plane: where its state lives, how it runs jobs and which policy places them."""

    state_dir: Path
    db_url: str | None = None  # default: SQLite file state_dir/cluster.db
    executor: str = "local"
    policy: str = "fifo"
    host: str = "127.0.0.1"
    port: int = 8470
    ray_address: str | None = None
    control: ControlConfig = field(default_factory=ControlConfig)
    tls_cert: Path | None = None  # both or neither: the API then speaks only HTTPS
    tls_key: Path | None = None
    audit_log: Path | None = None  # a hash-chained record of every state-changing call
    rate_limit_per_s: float | None = None  # per token; None: no limit
    master_ports: PortRange = field(default_factory=PortRange)  # gangs' MASTER_PORT, per job and attempt

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        uvicorn_ssl_kwargs(self.tls_cert, self.tls_key)  # both or neither; the files exist, key private
        if self.rate_limit_per_s is not None and not self.rate_limit_per_s > 0:
            raise ConfigError(f"--rate-limit must be > 0 requests/s per token, got {self.rate_limit_per_s}")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @property
    def database(self) -> str:
        return self.db_url or f"sqlite:///{(self.state_dir / 'cluster.db').resolve()}"

    @property
    def tokens_path(self) -> Path:
        return self.state_dir / "tokens.json"


@dataclass(slots=True)
class Built:
    app: FastAPI
    control: ControlPlane
    authority: TokenAuthority
    store: Store


def build(config: ServerConfig) -> Built:
    """Open the store (migrating it), the executor and the loop, and the API app over them."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database)
    # Agents could not beat while the server was down: give every node a fresh grace period.
    store.refresh_heartbeats()
    executor: ClusterExecutor
    if config.executor == "ray":
        from skyline.cluster.ray_executor import RayExecutor

        executor = RayExecutor(store, address=config.ray_address, master_ports=config.master_ports)
    else:
        executor = AgentExecutor(store, master_ports=config.master_ports)
    control = ControlPlane(store, executor, make_policy(config.policy), WallClock(), config.control)
    authority = TokenAuthority(config.tokens_path)
    return Built(
        create_app(control, authority, audit_log=config.audit_log, rate_limit_per_s=config.rate_limit_per_s),
        control,
        authority,
        store,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from exc
    return sock


def uvicorn_config(app: FastAPI, *, tls_cert: Path | None = None, tls_key: Path | None = None) -> Any:
    """uvicorn settings for the API: quiet, no websockets, keep-alive longer than an agent's beat;
    HTTPS when given a certificate and its key (`skyline.security.tls`)."""
    import uvicorn

    tls = uvicorn_ssl_kwargs(tls_cert, tls_key)
    return uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="none", timeout_keep_alive=30,
        ssl_certfile=tls.get("ssl_certfile"), ssl_keyfile=tls.get("ssl_keyfile"),
    )  # fmt: skip


class ServerThread:
    """A control plane served by uvicorn on a thread of this process; ``url`` once started."""

    def __init__(self, config: ServerConfig) -> None:
        import uvicorn

        self.built = build(config)
        self._sock = bind_socket(config.host, config.port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"{config.scheme}://{config.host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn_config(self.built.app, tls_cert=config.tls_cert, tls_key=config.tls_key)
        )
        self._thread = threading.Thread(target=self._serve, name="skyline-api", daemon=True)

    def _serve(self) -> None:
        # Server.run sets up uvloop (when installed): a plain asyncio loop on a thread answered in ~50 ms.
        self._server.run(sockets=[self._sock])

    def start(self, timeout_s: float = 20.0) -> ServerThread:
        self.built.control.start()
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise UnavailableError(f"control plane did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.built.control.stop()
        self.built.store.close()
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
