"""Assembling and running a control plane: store + executor + policy + loop + API on uvicorn.

`ServerConfig` says what to run; `build` wires it; `ServerThread` runs it inside this process (tests,
the demo, benchmarks); ``skyline cluster up`` runs it in the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from skyline.cluster.agent_executor import AgentExecutor
from skyline.cluster.api import create_app
from skyline.cluster.clock import WallClock
from skyline.cluster.control import ClusterExecutor, ControlConfig, ControlPlane
from skyline.cluster.store import Store
from skyline.core.net import PortRange
from skyline.errors import ConfigError
from skyline.scheduling.policies import POLICIES, make_policy
from skyline.security.tls import uvicorn_ssl_kwargs
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer

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
    store.nodes.refresh_heartbeats()
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
    """A control plane served on a thread of this process (`BackgroundServer`); ``url`` once started."""

    def __init__(self, config: ServerConfig) -> None:
        self.built = build(config)
        tls = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        # keep-alive longer than an agent's beat, as in the foreground server (`uvicorn_config`)
        self._server = BackgroundServer(
            self.built.app, host=config.host, port=config.port, tls=tls, keep_alive_s=30
        )
        self.port, self.url = self._server.port, self._server.url

    def start(self) -> ServerThread:
        self.built.control.start()
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self.built.control.stop()
        self.built.store.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
