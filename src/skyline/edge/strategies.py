"""Edge collaboration strategies: one interface, one registry, one contract suite (tests/contract).

A strategy answers a batch on the agent, with its verified local model and/or the cloud:

- ``local`` — the local model only;
- ``cloud`` — the cloud's model (``cloud_model``) for every input; the local model, marked degraded, when
  the cloud is unreachable;
- ``cascade`` — the local model first, inputs it is unsure of to the cloud (`skyline.edge.cascade`);
- ``split`` — the local model's head up to Neurosurgeon's cut, its tail in the cloud (the same signed
  version on both sides, `skyline.edge.split_serving`).

Each answers with class probabilities and who answered each row: ``edge``, ``cloud``, ``split``, or
``edge-degraded`` (the cloud was needed but unreachable, so the edge answered). The agent tells a strategy
which verified version is in use (`EdgeStrategy.use`) and calls `EdgeStrategy.refresh` periodically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.edge.cascade import CascadeRouter
from skyline.edge.cloud_client import CloudClient
from skyline.edge.detector import HardExampleDetector
from skyline.edge.local_model import LocalModel
from skyline.edge.uplink_store import UplinkStore
from skyline.errors import UnavailableError

FloatArray = npt.NDArray[np.float32]
Answer = tuple[FloatArray, list[str]]
SOURCES = ("edge", "cloud", "split", "edge-degraded")


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyContext:
    """What a strategy may use: the cloud (with the agent's timeout, and a patient client for link probes),
    the uplink queue, the names of the local and the cloud model, and the strategies' settings."""

    cloud: CloudClient
    probe_cloud: CloudClient
    uplink: UplinkStore
    model: str
    cloud_model: str
    detector: HardExampleDetector
    int8: bool = False
    probe_bytes: int = 256 * 1024


class EdgeStrategy(ABC):
    """How the agent answers a batch; see the module docstring."""

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.model: LocalModel | None = None

    def use(self, model: LocalModel) -> None:
        """A newly verified version is in use from now on."""
        self.model = model

    @property
    def ready(self) -> bool:
        """Whether the strategy can answer (a verified model is installed)."""
        return self.model is not None

    def local(self) -> LocalModel:
        if self.model is None:
            raise UnavailableError(
                f"no verified version of model {self.context.model!r} yet; the agent is syncing"
            )
        return self.model

    def check_input(self, x: FloatArray) -> None:
        """Raise `ConfigError` (HTTP 422) unless ``x`` fits the model; nothing is computed before."""
        self.local().check_input(x)

    @abstractmethod
    def answer(self, x: FloatArray) -> Answer:
        """Class probabilities (batch, classes) for the batch ``x``, and who answered each row."""

    def refresh(self) -> None:  # noqa: B027 - only strategies that measure something override it
        """Periodic work (the agent calls it every ``probe_s``): re-measure what the strategy depends on."""

    def status(self) -> dict[str, Any]:
        """Flat metrics for the agent's status and telemetry."""
        return {}

    def close(self) -> None:  # noqa: B027 - only strategies that hold resources override it
        """Release what the strategy holds."""


class LocalStrategy(EdgeStrategy):
    def answer(self, x: FloatArray) -> Answer:
        return self.local().predict(x), ["edge"] * len(x)


class CloudStrategy(EdgeStrategy):
    @property
    def ready(self) -> bool:
        return True  # the cloud answers even before a local model is installed

    def check_input(self, x: FloatArray) -> None:
        if self.model is not None:
            self.model.check_input(x)

    def answer(self, x: FloatArray) -> Answer:
        try:
            return self.context.cloud.infer(self.context.cloud_model, x), ["cloud"] * len(x)
        except UnavailableError:
            if self.model is None:
                raise
            return self.model.predict(x), ["edge-degraded"] * len(x)


class CascadeStrategy(EdgeStrategy):
    def __init__(self, context: StrategyContext) -> None:
        super().__init__(context)
        self.router = CascadeRouter(
            edge=lambda x: self.local().predict(x),
            cloud=lambda x: context.cloud.infer(context.cloud_model, x),
            detector=context.detector,
            uplink=context.uplink,
        )

    def answer(self, x: FloatArray) -> Answer:
        answers = [self.router.answer(row) for row in x]
        probs = np.asarray([a.probs for a in answers], dtype=np.float32)
        return probs, [a.source + ("-degraded" if a.degraded else "") for a in answers]

    def status(self) -> dict[str, Any]:
        return {"offloaded": self.router.counts.offloaded, "cascade_degraded": self.router.counts.degraded}


class SplitStrategy(EdgeStrategy):
    """Split inference of the local model's version with the same version in the cloud."""

    def __init__(self, context: StrategyContext) -> None:
        super().__init__(context)
        self.serving: Any = None  # a SplitServing for the version in use

    def use(self, model: LocalModel) -> None:
        from skyline.edge.split_serving import SplitServing

        fresh = SplitServing(
            model.folder, model.version, cloud=self.context.cloud, probe_client=self.context.probe_cloud,
            model_name=self.context.model, int8=self.context.int8, probe_bytes=self.context.probe_bytes,
        )  # fmt: skip
        previous, self.serving = self.serving, fresh
        super().use(model)
        if previous is not None:
            previous.close()
        fresh.refresh()

    def answer(self, x: FloatArray) -> Answer:
        serving = self.serving
        if serving is None:
            raise UnavailableError(
                f"no verified version of model {self.context.model!r} yet; the agent is syncing"
            )
        result: Answer = serving.answer(x)
        return result

    def refresh(self) -> None:
        if self.serving is not None:
            self.serving.refresh()

    def status(self) -> dict[str, Any]:
        return {} if self.serving is None else dict(self.serving.status())

    def close(self) -> None:
        if self.serving is not None:
            self.serving.close()


EDGE_STRATEGIES: dict[str, Callable[[StrategyContext], EdgeStrategy]] = {
    "local": LocalStrategy,
    "cloud": CloudStrategy,
    "cascade": CascadeStrategy,
    "split": SplitStrategy,
}
