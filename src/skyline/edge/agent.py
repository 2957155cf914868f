"""The edge agent (`skyline edge run`): verified model updates, local inference, cascade to the cloud, split
inference with the cloud, store-and-forward uplink and telemetry — each in its own thread, all stopped by
`EdgeAgent.stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt

from skyline.edge.cascade import CascadeRouter
from skyline.edge.cloud_client import CloudClient, verifying_context
from skyline.edge.detector import HardExampleDetector
from skyline.edge.model_sync import ModelSync
from skyline.edge.uplink_sender import SenderConfig, UplinkSender
from skyline.edge.uplink_store import UplinkPolicy, UplinkStore
from skyline.errors import ConfigError, IntegrityError, NotFoundError, SkylineError, UnavailableError

if TYPE_CHECKING:
    from skyline.edge.split_serving import SplitServing

FloatArray = npt.NDArray[np.float32]
_log = logging.getLogger(__name__)
AGENT_STRATEGIES = ("local", "cascade", "split", "cloud")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Everything `skyline edge run` takes."""

    cloud_url: str
    token: str
    model: str
    store: Path
    public_key: Path | None = None  # verifies the models pulled from the repository; unused by split
    strategy: str = "local"
    cloud_model: str = "cloud-classifier"
    method: str = "margin"
    threshold: float = 0.5
    cloud_timeout_s: float = 1.0
    poll_s: float = 5.0
    telemetry_s: float = 5.0
    name: str = "edge-agent"
    uplink: UplinkPolicy = field(default_factory=UplinkPolicy)
    ca: Path | None = None  # verifies the cloud's HTTPS certificate (None: the system CAs)
    # Split strategy: ``model`` names a network of `skyline.edge.split.SPLIT_NETWORKS` (weights from the seed).
    int8: bool = False
    edge_slowdown: float = 10.0
    probe_s: float = 30.0
    probe_bytes: int = 256 * 1024
    probe_timeout_s: float = 30.0
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in AGENT_STRATEGIES:
            raise ConfigError(
                f"--strategy must be one of {', '.join(AGENT_STRATEGIES)} for the agent, got {self.strategy!r}"
            )
        if self.strategy == "split":
            self._check_split_network()
        elif self.public_key is None:
            raise ConfigError(
                f"--public-key is required with --strategy {self.strategy}: it verifies the cloud's models"
            )
        positive = (self.poll_s, self.telemetry_s, self.cloud_timeout_s, self.probe_s, self.probe_timeout_s)
        if min(positive) <= 0:
            raise ConfigError(
                "poll_s, telemetry_s, cloud_timeout_s, probe_s and probe_timeout_s must be positive"
            )
        if self.edge_slowdown < 1:
            raise ConfigError(f"--edge-slowdown must be >= 1, got {self.edge_slowdown}")

    def _check_split_network(self) -> None:
        from skyline.edge.split import SPLIT_NETWORKS  # torch: only for the split strategy

        if self.model not in SPLIT_NETWORKS:
            raise ConfigError(
                f"--strategy split needs --model naming a split network ({', '.join(SPLIT_NETWORKS)}), "
                f"got {self.model!r}"
            )


class LocalModel:
    """An ONNX classifier from a verified version folder, run with ONNX Runtime (one thread)."""

    def __init__(self, folder: Path, version: int) -> None:
        import onnxruntime as ort

        files = sorted(folder.glob("*.onnx"))
        if not files:
            raise NotFoundError(f"no .onnx file in {folder}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.version = version
        self._session = ort.InferenceSession(
            str(files[0]), sess_options=options, providers=["CPUExecutionProvider"]
        )
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        # Fixed sizes of the model's input (None where the graph leaves a dimension symbolic, e.g. the batch).
        self.input_shape: tuple[int | None, ...] = tuple(
            d if isinstance(d, int) else None for d in model_input.shape
        )

    def check_input(self, x: FloatArray) -> None:
        """Raise `ConfigError` (HTTP 422) unless ``x`` is a non-empty batch of the model's input shape."""
        expected = self.input_shape
        fits = x.ndim == len(expected) and all(
            want is None or want == got for want, got in zip(expected, x.shape, strict=True)
        )
        if not fits or x.shape[0] == 0:
            wanted = ["batch" if d is None else d for d in expected]
            raise ConfigError(
                f"input shape {list(x.shape)} does not fit the model's input {wanted}; send a batch"
            )

    def predict(self, x: FloatArray) -> FloatArray:
        self.check_input(x)
        logits = np.asarray(self._session.run(None, {self._input: x.astype(np.float32)})[0], dtype=np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)


class EdgeAgent:
    """Runs the agent's background loops and answers inference requests."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        config.store.mkdir(parents=True, exist_ok=True)
        headers = {"authorization": f"Bearer {config.token}"}
        self._http = httpx.Client(
            base_url=config.cloud_url,
            timeout=max(5.0, config.cloud_timeout_s),
            headers=headers,
            verify=verifying_context(config.ca),
        )
        self.sync = ModelSync(
            store=config.store, model=config.model, http=self._http, public_key=config.public_key
        )
        self.uplink = UplinkStore(config.store / "uplink.db", config.uplink)
        self.sender = UplinkSender(
            self.uplink, SenderConfig(cloud_url=config.cloud_url, token=config.token, ca=config.ca)
        )
        self.cloud = CloudClient(
            config.cloud_url, token=config.token, timeout_s=config.cloud_timeout_s, ca=config.ca
        )
        self._model: LocalModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.telemetry_failures = 0
        current = self.sync.current_dir()
        if current is not None:  # a restart serves the last verified model at once, even offline
            self._model = LocalModel(current, self.sync.current_version() or 0)
        self.router = CascadeRouter(
            edge=self._predict_local,
            cloud=lambda x: self.cloud.infer(config.cloud_model, x),
            detector=HardExampleDetector(method=config.method, threshold=config.threshold),
            uplink=self.uplink,
        )
        self.split = self._split_serving() if config.strategy == "split" else None

    def _split_serving(self) -> SplitServing:
        from skyline.edge.split import SPLIT_NETWORKS
        from skyline.edge.split_serving import SplitServing

        config = self.config
        network = SPLIT_NETWORKS[config.model]
        self._probe_cloud = CloudClient(
            config.cloud_url, token=config.token, timeout_s=config.probe_timeout_s, ca=config.ca
        )
        return SplitServing(
            network.build(seed=config.split_seed),
            network.input_shape,
            cloud=self.cloud,
            probe_client=self._probe_cloud,
            cloud_model=config.model,
            edge_slowdown=config.edge_slowdown,
            int8=config.int8,
            probe_bytes=config.probe_bytes,
        )

    @property
    def model_version(self) -> int | None:
        return None if self._model is None else self._model.version

    @property
    def ready(self) -> bool:
        """Whether the agent can answer: a verified model is installed, or it splits a built-in network."""
        return self.split is not None or self._model is not None

    def refresh_model(self) -> int | None:
        """One repository check; swaps in a newly verified version. A refused download keeps the old model."""
        try:
            installed = self.sync.check()
        except (IntegrityError, UnavailableError):
            return None
        if installed is not None:
            folder = self.sync.current_dir()
            assert folder is not None
            fresh = LocalModel(folder, installed)
            with self._lock:
                self._model = fresh
        return installed

    def _predict_local(self, x: FloatArray) -> FloatArray:
        model = self._model
        if model is None:
            raise UnavailableError(
                f"no verified version of model {self.config.model!r} yet; the agent is syncing"
            )
        return model.predict(x)

    def infer(self, x: FloatArray) -> tuple[FloatArray, list[str]]:
        """Class probabilities for a batch, and who answered each row (edge, cloud, edge-degraded).

        A batch that does not fit the local model's input raises `ConfigError` before any strategy runs.
        """
        model = self._model
        if self.split is not None:
            self.split.check_input(x)
        elif model is not None:
            model.check_input(x)
        elif x.ndim < 2 or x.shape[0] == 0:
            raise ConfigError(f"input shape {list(x.shape)} is not a batch; send [batch, features...]")
        if self.split is not None:
            probs, sources = self.split.answer(x)
        elif self.config.strategy == "local":
            probs, sources = self._predict_local(x), ["edge"] * len(x)
        elif self.config.strategy == "cloud":
            probs, sources = self.cloud.infer(self.config.cloud_model, x), ["cloud"] * len(x)
        else:
            answers = [self.router.answer(row) for row in x]
            probs = np.asarray([a.probs for a in answers], dtype=np.float32)
            sources = [a.source + ("-degraded" if a.degraded else "") for a in answers]
        for row, source in zip(probs, sources, strict=True):
            self.uplink.put(
                "result", {"label": int(row.argmax()), "source": source, "model_version": self.model_version}
            )
        return probs, sources

    def status(self) -> dict[str, Any]:
        counts = self.router.counts
        split_answered, split_degraded = (
            (self.split.counts.answered, self.split.counts.degraded) if self.split is not None else (0, 0)
        )
        return {
            "agent": self.config.name,
            "model": self.config.model,
            "model_version": self.model_version,
            "strategy": self.config.strategy,
            "answered": counts.answered + split_answered,
            "offloaded": counts.offloaded,
            "degraded": counts.degraded + split_degraded,
            "uplink_queued": len(self.uplink),
            **{f"uplink_{k}": v for k, v in self.uplink.counters().items()},
            "sync_installed": self.sync.counts.installed,
            "sync_refused": self.sync.counts.refused,
            "telemetry_failures": self.telemetry_failures,
            **(self.split.status() if self.split is not None else {}),
        }

    def _every(self, period_s: float, action: Any) -> None:
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

    def _report(self) -> None:
        try:
            self.cloud.telemetry(self.config.name, self.status())
        except SkylineError:  # unreachable, or a revoked token: counted, the loop goes on
            self.telemetry_failures += 1

    def start(self) -> EdgeAgent:
        targets: list[tuple[str, Any, tuple[Any, ...]]] = [
            ("telemetry", self._every, (self.config.telemetry_s, self._report)),
            ("uplink", self.sender.loop, (self._stop,)),
        ]
        if self.split is None:  # a split network is built in: nothing to pull from the repository
            targets.append(("model-sync", self._every, (self.config.poll_s, self.refresh_model)))
        else:
            targets.append(("split-probe", self._every, (self.config.probe_s, self.split.refresh)))
        for name, target, args in targets:
            thread = threading.Thread(target=target, args=args, name=f"edge-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.sender.close()
        self.cloud.close()
        if self.split is not None:
            self._probe_cloud.close()
        self._http.close()
        self.uplink.close()
