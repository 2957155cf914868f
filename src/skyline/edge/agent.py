"""The edge agent (`skyline edge run`): the fleet's version of its model (verified, swapped atomically),
inference with a collaboration strategy (`skyline.edge.strategies`), labelled records (accuracy per
version, training data), store-and-forward uplink, telemetry, and optionally a Flower SuperNode that trains
on the data the agent holds — each in its own thread or process, all stopped by `EdgeAgent.stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from skyline.edge.cloud_client import CloudClient, verifying_context
from skyline.edge.detector import HardExampleDetector
from skyline.edge.local_model import LocalModel
from skyline.edge.model_sync import ModelSync
from skyline.edge.strategies import EDGE_STRATEGIES, EdgeStrategy, StrategyContext
from skyline.edge.uplink_sender import SenderConfig, UplinkSender
from skyline.edge.uplink_store import UplinkPolicy, UplinkStore
from skyline.edge.version_stats import VersionStats
from skyline.errors import ConfigError, IntegrityError, SkylineError, UnavailableError

FloatArray = npt.NDArray[np.float32]
_log = logging.getLogger(__name__)
LABELLED_SHARD_ROWS = 1024  # labelled rows kept in memory before they are saved as a training shard


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedNode:
    """Join federated learning: a Flower SuperNode connected to ``superlink`` (host:port), training on the
    agent's data folder; ``ca`` verifies the SuperLink's certificate (required off loopback)."""

    superlink: str
    ca: Path | None = None

    def __post_init__(self) -> None:
        host, _, port = self.superlink.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--superlink must be HOST:PORT, got {self.superlink!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Everything `skyline edge run` takes."""

    cloud_url: str
    token: str
    model: str
    store: Path
    public_key: Path  # verifies every model version pulled from the repository
    strategy: str = "local"
    cloud_model: str = "cloud-classifier"
    method: str = "margin"
    threshold: float = 0.5
    cloud_timeout_s: float = 1.0
    poll_s: float = 5.0
    telemetry_s: float = 5.0
    name: str = "edge-agent"
    labels: Mapping[str, str] = field(default_factory=dict)  # e.g. site=paris, hardware=rpi4
    uplink: UplinkPolicy = field(default_factory=UplinkPolicy)
    ca: Path | None = None  # verifies the cloud's HTTPS certificate (None: the system CAs)
    data: Path | None = None  # training data and collected labelled records (default: STORE/data)
    federated: FederatedNode | None = None
    int8: bool = False  # split: int8 activations
    probe_s: float = 30.0  # split: seconds between link measurements
    probe_bytes: int = 256 * 1024
    probe_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.strategy not in EDGE_STRATEGIES:
            raise ConfigError(
                f"--strategy must be one of {', '.join(EDGE_STRATEGIES)} for the agent, got {self.strategy!r}"
            )
        positive = (self.poll_s, self.telemetry_s, self.cloud_timeout_s, self.probe_s, self.probe_timeout_s)
        if min(positive) <= 0:
            raise ConfigError(
                "poll_s, telemetry_s, cloud_timeout_s, probe_s and probe_timeout_s must be positive"
            )
        if not Path(self.public_key).is_file():
            raise ConfigError(
                f"--public-key {self.public_key} is not a file; pass the key that signs the cloud's models"
            )
        if not self.name or not all(key and value for key, value in self.labels.items()):
            raise ConfigError(
                "the agent needs a name, and every label a key and a value (--label site=paris)"
            )

    @property
    def data_dir(self) -> Path:
        return self.data if self.data is not None else self.store / "data"


class EdgeAgent:
    """Runs the agent's background loops and answers inference requests."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        config.store.mkdir(parents=True, exist_ok=True)
        self._http = httpx.Client(
            base_url=config.cloud_url, timeout=max(5.0, config.cloud_timeout_s),
            headers={"authorization": f"Bearer {config.token}"}, verify=verifying_context(config.ca),
        )  # fmt: skip
        self.sync = ModelSync(
            store=config.store,
            model=config.model,
            http=self._http,
            public_key=config.public_key,
            agent=config.name,
        )
        self.uplink = UplinkStore(config.store / "uplink.db", config.uplink)
        self.sender = UplinkSender(
            self.uplink, SenderConfig(cloud_url=config.cloud_url, token=config.token, ca=config.ca)
        )
        self.cloud = CloudClient(
            config.cloud_url, token=config.token, timeout_s=config.cloud_timeout_s, ca=config.ca
        )
        self._probe_cloud = CloudClient(
            config.cloud_url, token=config.token, timeout_s=config.probe_timeout_s, ca=config.ca
        )
        self.strategy: EdgeStrategy = EDGE_STRATEGIES[config.strategy](
            StrategyContext(
                cloud=self.cloud, probe_cloud=self._probe_cloud, uplink=self.uplink, model=config.model,
                cloud_model=config.cloud_model,
                detector=HardExampleDetector(method=config.method, threshold=config.threshold),
                int8=config.int8, probe_bytes=config.probe_bytes,
            )
        )  # fmt: skip
        self.stats = VersionStats()
        self.telemetry_failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._node: Any = None  # the Flower SuperNode process, with --fl
        current = self.sync.current_dir()
        if current is not None:  # a restart serves the last verified model at once, even offline
            self.strategy.use(LocalModel(current, self.sync.current_version() or 0))

    @property
    def model_version(self) -> int | None:
        model = self.strategy.model
        return None if model is None else model.version

    @property
    def ready(self) -> bool:
        return self.strategy.ready

    def refresh_model(self) -> int | None:
        """One check of the fleet's desired version; swaps it in once verified. A refused or failed
        switch keeps the model in use."""
        try:
            installed = self.sync.check()
        except (IntegrityError, UnavailableError):
            return None
        if installed is not None:
            folder = self.sync.current_dir()
            if folder is None:
                raise IntegrityError(
                    f"model {self.config.model!r} version {installed} vanished after install"
                )
            self.strategy.use(LocalModel(folder, installed))
        return installed

    def infer(self, x: FloatArray) -> tuple[FloatArray, list[str]]:
        """Class probabilities for a batch, and who answered each row (edge, cloud, split, edge-degraded).

        A batch that does not fit the model raises `ConfigError` before any strategy runs; every failed
        request counts as an error of the version in use (what a rollout watches)."""
        version = self.model_version
        started = time.perf_counter()
        try:
            if x.ndim < 2 or x.shape[0] == 0:
                raise ConfigError(f"input shape {list(x.shape)} is not a batch; send [batch, features...]")
            if not np.isfinite(x).all():
                raise ConfigError("the input holds NaN or infinite values; send finite numbers")
            self.strategy.check_input(x)
            probs, sources = self.strategy.answer(x)
        except SkylineError:
            self.stats.failed(version, max(1, len(x) if x.ndim >= 2 else 1))  # rows, as answers count
            raise
        degraded = sum(source.endswith("-degraded") for source in sources)
        self.stats.answered(
            version, len(x), (time.perf_counter() - started) * 1e3 / len(x), degraded=degraded
        )
        for row, source in zip(probs, sources, strict=True):
            self.uplink.put(
                "result", {"label": int(row.argmax()), "source": source, "model_version": version}
            )
        return probs, sources

    def label(self, x: FloatArray, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Labelled records: the model in use predicts them (its accuracy per version), they join the
        agent's training data, and each is uplinked (the cloud's rollout checks accuracy on them)."""
        from skyline.federated.data_folder import write_rows

        model = self.strategy.local()
        if labels.shape != (len(x),):
            raise ConfigError(
                f"need one label per input row: {len(x)} rows, labels of shape {list(labels.shape)}"
            )
        predicted = model.predict(x).argmax(axis=1)
        self.stats.labelled(model.version, len(labels), int((predicted == labels).sum()))
        write_rows(self.config.data_dir, x, labels)
        for truth, guess in zip(labels.tolist(), predicted.tolist(), strict=True):
            self.uplink.put(
                "labelled",
                {"agent": self.config.name, "model": self.config.model, "model_version": model.version,
                 "label": int(truth), "predicted": int(guess)},
            )  # fmt: skip
        return np.asarray(predicted, dtype=np.int64)

    def status(self) -> dict[str, Any]:
        """Flat metrics: version, readiness, answers, the uplink queue, sync counters, the strategy's own."""
        totals = self.stats.totals()
        return {
            "agent": self.config.name,
            "model": self.config.model,
            "model_version": self.model_version,
            "strategy": self.config.strategy,
            "ready": self.ready,
            "answered": totals["answered"],
            "errors": totals["errors"],
            "degraded": totals["degraded"],
            "uplink_queued": len(self.uplink),
            **{f"uplink_{k}": v for k, v in self.uplink.counters().items()},
            "sync_installed": self.sync.counts.installed,
            "sync_refused": self.sync.counts.refused,
            "telemetry_failures": self.telemetry_failures,
            "federated": self._node is not None and self._node.alive(),
            **self.strategy.status(),
        }

    def report(self) -> None:
        """Send one telemetry report (labels, status, per-version statistics); a failure is counted."""
        models = {self.config.model: {"version": self.model_version, "stats": self.stats.report()}}
        try:
            self.cloud.telemetry(
                self.config.name, self.status(), labels=dict(self.config.labels), models=models
            )
        except SkylineError:  # unreachable, or a revoked token: counted, the loop goes on
            self.telemetry_failures += 1

    def _every(self, period_s: float, action: Callable[[], object]) -> None:
        """Run ``action`` every ``period_s`` until stopped; one failed round is logged, the loop goes on (a dead
        loop would leave the model stale or the split cut stuck)."""
        while not self._stop.is_set():
            try:
                action()
            except Exception:
                _log.exception(
                    "edge agent: %s failed; retrying in %s s", getattr(action, "__name__", action), period_s
                )
            self._stop.wait(period_s)

    def start(self) -> EdgeAgent:
        config = self.config
        loops: list[tuple[str, float, Callable[[], object]]] = [
            ("model-sync", config.poll_s, self.refresh_model),
            ("telemetry", config.telemetry_s, self.report),
            ("strategy", config.probe_s, self.strategy.refresh),
        ]
        for name, period, action in loops:
            self._spawn(name, self._every, period, action)
        self._spawn("uplink", self.sender.loop, self._stop)
        if config.federated is not None:
            self._node = self._start_node(config.federated)
        return self

    def _spawn(self, name: str, target: Callable[..., object], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"edge-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_node(self, node: FederatedNode) -> Any:
        from skyline.federated.processes import start_supernode

        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        return start_supernode(
            self.config.store / "supernode",
            superlink=node.superlink,
            node_config={"data-path": str(self.config.data_dir.resolve()), "agent": self.config.name},
            ca=node.ca,
        )

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._node is not None:
            self._node.stop()
        self.strategy.close()
        self.sender.close()
        self.cloud.close()
        self._probe_cloud.close()
        self._http.close()
        self.uplink.close()
