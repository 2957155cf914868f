"""Assembling and running a control plane: store + executor + policy + loop + API (+ services).

`ServerConfig` says what to run; `build` wires it; `ServerThread` runs it inside this process (tests,
the demo, benchmarks); `serve_forever` runs it in the foreground until SIGTERM or Ctrl-C, supervising
the local node agent (``skyline cluster up`` is a config and a call to it).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from skyline.cluster.api import create_app
from skyline.cluster.clock import WallClock
from skyline.cluster.console import Console, ConsoleConfig, mount_console
from skyline.cluster.control import ControlConfig, ControlPlane
from skyline.cluster.executors import ExecutorConfig, executor_kind
from skyline.cluster.local_agent import LocalAgent, LocalAgentConfig
from skyline.cluster.service_plane import ServicePlane
from skyline.cluster.services import ServicesConfig
from skyline.cluster.store import Store
from skyline.core.net import PortRange
from skyline.errors import ConfigError
from skyline.scheduling.policies import policy_class
from skyline.scheduling.policy import PolicyOptions
from skyline.security.tls import uvicorn_ssl_kwargs
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer, wait_for_stop_signal

# The scheduling loop shares the interpreter with the API's event loop; each database call releases the
# GIL and, at the default 5 ms switch interval, waits up to 5 ms to get it back while requests stream in
# (a 3-job pass was measured taking 200 ms). A shorter interval keeps passes short.
SWITCH_INTERVAL_S = 0.0005
LOCAL_AGENT_SUBJECT = "agent-local"  # the subject of the local agent's token (revoked when it stops)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """A control plane: where its state lives, how it runs jobs and which policy places them.

    ``policy_options`` are the policy's typed options (None: its defaults); ``throughputs`` Gavel's
    ``simulation_throughputs.json`` for heterogeneity-aware policies; ``local_agent`` the node agent
    `serve_forever` runs on this machine (local executor only; None: none).
    """

    state_dir: Path
    db_url: str | None = None  # default: SQLite file state_dir/cluster.db
    executor: str = "local"
    policy: str = "fifo"
    policy_options: PolicyOptions | None = None
    throughputs: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8470
    ray_address: str | None = None
    control: ControlConfig = field(default_factory=ControlConfig)
    tls_cert: Path | None = None  # both or neither: the API then speaks only HTTPS
    tls_key: Path | None = None
    audit_log: Path | None = None  # a hash-chained record of every state-changing call
    rate_limit_per_s: float | None = None  # per token; None: no limit
    master_ports: PortRange = field(default_factory=PortRange)  # gangs' MASTER_PORT, per job and attempt
    gateway_port: int = 0  # the services' gateway (0: any free port); on ``host``
    services: ServicesConfig = field(default_factory=ServicesConfig)
    model_repository: Path | None = None  # shown by the console's Models view
    trusted_keys: tuple[Path, ...] = ()  # public keys that may have signed the repository's versions
    edge_fleet: Callable[[], list[dict[str, Any]]] | None = None  # the edge agents the cloud knows
    local_agent: LocalAgentConfig | None = None

    def __post_init__(self) -> None:
        kind = executor_kind(self.executor)
        if self.ray_address is not None and "ray_address" not in kind.uses:
            raise ConfigError(f"--ray-address is used only by --executor ray, not {self.executor}; drop it")
        if self.local_agent is not None and self.executor != "local":
            raise ConfigError(f"--executor {self.executor} runs no local agent: drop --agent/--heartbeat-s")
        cls = policy_class(self.policy)
        if self.policy_options is not None and type(self.policy_options) is not cls.Options:
            raise ConfigError(f"policy {self.policy} takes {cls.Options.__name__} options")
        if not 0 <= self.port <= 65535 or not 0 <= self.gateway_port <= 65535:
            raise ConfigError(
                f"--port and --gateway-port must be 0..65535, got {self.port}, {self.gateway_port}"
            )
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

    @property
    def tls(self) -> tuple[Path, Path] | None:
        return (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None


@dataclass(slots=True)
class Built:
    app: FastAPI
    control: ControlPlane
    authority: TokenAuthority
    store: Store
    services: ServicePlane
    console: Console  # the web console at /ui (`skyline.cluster.console`)


def build(config: ServerConfig) -> Built:
    """Open the store (migrating it), the executor and the loop, and the API app over them."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    throughput = {}
    if config.throughputs is not None:
        from skyline.simulation.throughput import read_gavel_throughputs

        throughput = read_gavel_throughputs(config.throughputs)
    store = Store(config.database)
    # Agents could not beat while the server was down: give every node a fresh grace period.
    store.nodes.refresh_heartbeats()
    executor = executor_kind(config.executor).build(
        store, ExecutorConfig(master_ports=config.master_ports, ray_address=config.ray_address)
    )
    policy = policy_class(config.policy)(config.policy_options)
    control = ControlPlane(store, executor, policy, WallClock(), config.control, throughput=throughput)
    authority = TokenAuthority(config.tokens_path)
    services = ServicePlane(
        store, control, config.services, gateway_host=config.host, gateway_port=config.gateway_port,
        authority=authority, tls=config.tls,
    )  # fmt: skip
    app = create_app(
        control,
        authority,
        audit_log=config.audit_log,
        rate_limit_per_s=config.rate_limit_per_s,
        services=services,
    )
    console = mount_console(app, control, authority, services=services, config=ConsoleConfig(
        policy=config.policy, audit_log=config.audit_log, model_repository=config.model_repository,
        trusted_keys=config.trusted_keys, edge_fleet=config.edge_fleet,
    ))  # fmt: skip
    return Built(app, control, authority, store, services, console)


class ServerThread:
    """A control plane served on a thread of this process (`BackgroundServer`); ``url`` once started."""

    def __init__(self, config: ServerConfig) -> None:
        self.built = build(config)
        try:  # keep-alive longer than an agent's beat
            self._server = BackgroundServer(
                self.built.app, host=config.host, port=config.port, tls=config.tls, keep_alive_s=30
            )
        except BaseException:  # e.g. the port is taken: close what build() opened (store, executor, gateway)
            self._close_built()
            raise
        self.port, self.url = self._server.port, self._server.url

    def start(self) -> ServerThread:
        self.built.control.start()
        self.built.services.start()
        self._server.start()
        return self

    def stop(self) -> None:
        self.built.console.close()  # its live streams end now, so the server need not wait for them
        self._server.stop()
        self._close_built()

    def _close_built(self) -> None:
        self.built.services.stop()
        self.built.control.stop()
        self.built.store.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True, slots=True, kw_only=True)
class Serving:
    """What `serve_forever` tells its caller once the control plane answers."""

    url: str
    database: str
    gateway_url: str
    admin_token: str | None  # the first admin token, issued once ever (None on later starts)
    agent_pid: int | None
    agent_adopted: bool  # the local agent an earlier instance started (after a SIGKILL) was adopted


def serve_forever(
    config: ServerConfig, *, announce: Callable[[Serving], None], stop_after_s: float | None = None
) -> None:
    """Run the control plane in the foreground until SIGTERM or SIGINT (or ``stop_after_s``).

    On a clean stop everything ends in order: the API, the services, the loop, the store, and the
    local agent, whichever instance started it. After a SIGKILL the agent lives on (its jobs keep
    running); the next start adopts it.
    """
    thread = ServerThread(config)
    agent: LocalAgent | None = None
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        thread.start()
        # What start-up built (modules, the app, the store's metadata) lives as long as the process: out
        # of the collector's sight, a full collection walks only what serving allocates, 5-10 ms instead
        # of ~100 ms (a pause every few thousand jobs that every request waiting then felt).
        gc.collect()
        gc.freeze()
        admin = thread.built.authority.bootstrap_admin()
        if config.local_agent is not None:
            agent = LocalAgent.start(
                config.state_dir,
                thread.url,
                lambda: thread.built.authority.issue(LOCAL_AGENT_SUBJECT, "agent"),
                config.local_agent,
                ca=config.tls_cert,
            )
        announce(
            Serving(
                url=thread.url, database=thread.built.store.url, gateway_url=thread.built.services.gateway.url,
                admin_token=admin, agent_pid=agent.pid if agent else None,
                agent_adopted=bool(agent and agent.adopted),
            )
        )  # fmt: skip
        wait_for_stop_signal(stop_after_s)
    finally:
        thread.stop()
        if agent is not None:
            agent.stop()
            _revoke_local_agent_tokens(thread.built.authority)
        sys.setswitchinterval(previous)
        gc.unfreeze()


def _revoke_local_agent_tokens(authority: TokenAuthority) -> None:
    """The stopped local agent's token (and any an earlier instance left) can never be used again."""
    for record in authority.records():
        if record.subject == LOCAL_AGENT_SUBJECT and record.revoked_at is None:
            authority.revoke(record.token_id)
