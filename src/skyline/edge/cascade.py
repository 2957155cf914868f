"""Cascaded (joint) inference: the edge model answers, uncertain inputs go to the cloud model.

When the cloud is slow or down (the client's real timeout fires) the edge's own answer is returned, marked
``degraded``, and the hard example is kept in the uplink queue (when one is given) so it reaches the cloud
later — the gap Sedna leaves open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.edge.detector import HardExampleDetector
from skyline.edge.uplink_store import UplinkStore
from skyline.errors import OverloadedError, UnavailableError

FloatArray = npt.NDArray[np.float32]
Predict = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True, slots=True, kw_only=True)
class CascadeAnswer:
    """One input's answer: the label, who gave it (``edge``, ``cloud``), and whether the cloud was missed."""

    label: int
    probs: tuple[float, ...]
    source: str
    degraded: bool
    latency_ms: float


@dataclass(slots=True)
class CascadeCounts:
    answered: int = 0
    offloaded: int = 0
    degraded: int = 0
    buffered: int = 0


class CascadeRouter:
    """Routes one input at a time: edge first, the cloud for hard inputs, the edge again if the cloud fails."""

    def __init__(
        self,
        *,
        edge: Predict,
        cloud: Predict,
        detector: HardExampleDetector,
        uplink: UplinkStore | None = None,
    ) -> None:
        self.edge, self.cloud, self.detector, self.uplink = edge, cloud, detector, uplink
        self.counts = CascadeCounts()

    def answer(self, x: FloatArray) -> CascadeAnswer:
        """Answer one input ``x`` (*input_shape, no batch axis)."""
        started = time.perf_counter()
        batch = x[None, ...].astype(np.float32)
        probs = self.edge(batch)
        source, degraded = "edge", False
        if bool(self.detector.is_hard(probs)[0]):
            self.counts.offloaded += 1
            try:
                probs = self.cloud(batch)
                source = "cloud"
            except UnavailableError:
                degraded = True
                self.counts.degraded += 1
                self._buffer(x, probs)
        self.counts.answered += 1
        row = probs[0]
        return CascadeAnswer(
            label=int(row.argmax()),
            probs=tuple(float(p) for p in row),
            source=source,
            degraded=degraded,
            latency_ms=(time.perf_counter() - started) * 1e3,
        )

    def _buffer(self, x: FloatArray, edge_probs: FloatArray) -> None:
        if self.uplink is None:
            return
        try:
            self.uplink.put(
                "hard-example",
                {"x": x.ravel().tolist(), "shape": list(x.shape), "edge_probs": edge_probs[0].tolist()},
            )
            self.counts.buffered += 1
        except OverloadedError:
            pass  # reject-new policy: counted by the store itself
