"""The edge cloud as one object: the inference server with the edge's routers (`skyline.edge.cloud_app`), its
stores (uplinked records, the fleet), the rollout controller, and optionally a Flower SuperLink that the
agents' SuperNodes join for federated learning. `EdgeCloud` runs it in the background (tests, the demo,
benchmarks); `serve_forever` runs it until SIGTERM/SIGINT (``skyline edge cloud``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from skyline.edge.cloud_app import create_cloud_app
from skyline.edge.fleet import FleetStore
from skyline.edge.ingest import IngestStore
from skyline.edge.rollout import RolloutController
from skyline.errors import ConfigError
from skyline.security.tokens import TokenAuthority

FLEET_DB = ".skyline/fleet.db"  # inside the repository: the cloud and `skyline fl start` share it


def fleet_path(repository: Path) -> Path:
    """Where the fleet's state of a repository lives."""
    return Path(repository) / FLEET_DB


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudConfig:
    """Everything `skyline edge cloud` takes."""

    repository: Path
    tokens: Path
    ingest: Path
    host: str = "127.0.0.1"
    port: int = 8500
    public_key: Path | None = None  # verifies every version served, split or pulled
    tls: tuple[Path, Path] | None = None
    audit_log: Path | None = None
    rate_limit_per_s: float | None = None
    tick_s: float = 1.0  # how often rollouts are advanced
    superlink_port: int | None = None  # run a Flower SuperLink on this port (0: any free port)

    def __post_init__(self) -> None:
        if self.rate_limit_per_s is not None and not self.rate_limit_per_s > 0:
            raise ConfigError(f"--rate-limit must be > 0 requests/s, got {self.rate_limit_per_s}")
        if self.tick_s <= 0:
            raise ConfigError(f"tick_s must be positive, got {self.tick_s}")


class EdgeCloud:
    """``with EdgeCloud(config) as cloud: cloud.url ...``; everything it starts is stopped on exit."""

    def __init__(self, config: CloudConfig, *, authority: TokenAuthority | None = None) -> None:
        self.config = config
        config.repository.mkdir(parents=True, exist_ok=True)
        self.authority = authority or TokenAuthority(config.tokens)
        self.ingest = IngestStore(config.ingest)
        self.fleet = FleetStore(fleet_path(config.repository))
        self.controller = RolloutController(self.fleet, self.ingest.labelled_accuracy, tick_s=config.tick_s)
        self.app = create_cloud_app(
            repository=config.repository, ingest=self.ingest, authority=self.authority, fleet=self.fleet,
            controller=self.controller, public_key=config.public_key, audit_log=config.audit_log,
            rate_limit_per_s=config.rate_limit_per_s,
        )  # fmt: skip
        self._server: Any = None
        self._superlink: Any = None
        self.superlink = ""  # host:port of the SuperLink, once started

    @property
    def url(self) -> str:
        if self._server is None:
            raise ConfigError("the cloud is not started")
        return str(self._server.url)

    @property
    def port(self) -> int:
        if self._server is None:
            raise ConfigError("the cloud is not started")
        return int(self._server.port)

    def start(self) -> EdgeCloud:
        from skyline.serving.server import BackgroundServer

        try:
            if self.config.superlink_port is not None:
                self._start_superlink()
            self._server = BackgroundServer(
                self.app, host=self.config.host, port=self.config.port, tls=self.config.tls, keep_alive_s=30
            ).start()
            self.controller.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_superlink(self) -> None:
        from skyline.federated.processes import start_superlink

        folder = fleet_path(self.config.repository).parent / "superlink"
        self._superlink, port = start_superlink(
            folder, host=self.config.host, port=self.config.superlink_port or 0, tls=self.config.tls
        )
        self.superlink = f"{self.config.host}:{port}"

    def stop(self) -> None:
        self.controller.stop()
        if self._server is not None:
            self._server.stop()
        if self._superlink is not None:
            self._superlink.stop()
        tails = getattr(self.app.state, "split_tails", None)
        if tails is not None:
            tails.close()
        self.fleet.close()
        self.ingest.close()

    def __enter__(self) -> EdgeCloud:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(config: CloudConfig, *, announce: Any = print, duration_s: float | None = None) -> None:
    """Run the edge cloud until SIGTERM/SIGINT (or ``duration_s``); ``announce`` gets one line when it is up."""
    from skyline.serving.server import wait_for_stop_signal

    with EdgeCloud(config) as cloud:
        superlink = f", Flower SuperLink on {cloud.superlink}" if cloud.superlink else ""
        announce(f"edge cloud on {cloud.url} (repository {config.repository}){superlink}")
        wait_for_stop_signal(duration_s)


def serving_cloud(folder: Path, models: Mapping[str, Any], input_shape: tuple[int, ...]) -> CloudConfig:
    """A cloud configuration under ``folder`` that serves ``models`` (name → trained PyTorch classifier),
    each published as signed version 1 with a fresh key pair (evaluations and the demo run it in-process)."""
    from skyline.edge.publish import publish_model
    from skyline.security.signing import generate_signing_keys

    private, public = generate_signing_keys(folder / "keys" / "signing.key", folder / "keys" / "signing.pub")
    for name, model in models.items():
        publish_model(
            model, input_shape, root=folder / "repository", name=name, version=1, private_key=private
        )
    return CloudConfig(
        repository=folder / "repository", tokens=folder / "tokens.json", ingest=folder / "ingest.db",
        public_key=public, port=0,
    )  # fmt: skip
