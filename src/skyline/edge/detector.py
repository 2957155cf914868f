"""Hard-example detection for cascaded inference: how unsure the edge model is, and where to draw the line.

A *hardness* score per input, higher = more likely wrong (Sedna's hard-example mining, BranchyNet's
entropy exit): ``max-prob`` (1 − top probability), ``margin`` (1 − (top − second)) and ``entropy``
(normalized to [0, 1]). Inputs scoring above the threshold go to the cloud. The threshold is calibrated on
validation data, for a target offload fraction or for the smallest offload that reaches a target accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError, NotFoundError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _max_prob(probs: FloatArray) -> FloatArray:
    return np.asarray(1.0 - probs.max(axis=1), dtype=np.float64)


def _margin(probs: FloatArray) -> FloatArray:
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def _entropy(probs: FloatArray) -> FloatArray:
    clipped = np.clip(probs, 1e-12, 1.0)
    return np.asarray(-(clipped * np.log(clipped)).sum(axis=1) / math.log(probs.shape[1]), dtype=np.float64)


HARDNESS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "max-prob": _max_prob,
    "margin": _margin,
    "entropy": _entropy,
}


def hardness(probs: npt.ArrayLike, method: str) -> FloatArray:
    """Hardness of each row of ``probs`` (N, classes), in [0, 1]; higher means less sure."""
    if method not in HARDNESS:
        raise NotFoundError(f"unknown hardness method {method!r}; methods are {', '.join(HARDNESS)}")
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ConfigError(f"probs must have shape (N, classes >= 2), got {array.shape}")
    return HARDNESS[method](array)


@dataclass(frozen=True, slots=True, kw_only=True)
class HardExampleDetector:
    """Sends an input to the cloud when its hardness is strictly above ``threshold``."""

    method: str = "margin"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in HARDNESS:
            raise ConfigError(f"unknown hardness method {self.method!r}; methods are {', '.join(HARDNESS)}")

    def is_hard(self, probs: npt.ArrayLike) -> BoolArray:
        return hardness(probs, self.method) > self.threshold


def threshold_for_offload(scores: npt.ArrayLike, target_offload: float) -> float:
    """The threshold that offloads at most ``target_offload`` of these scores (the hardest ones).

    With k = floor(target · N), the threshold is the (k+1)-th largest score, so exactly the k hardest are
    strictly above it (fewer when scores tie at the boundary: never more than the target).
    """
    if not 0.0 <= target_offload <= 1.0:
        raise ConfigError(f"target offload must be in [0, 1], got {target_offload}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if ordered.size == 0:
        raise ConfigError("cannot calibrate a threshold on zero validation samples")
    k = math.floor(target_offload * ordered.size + 1e-9)
    return -math.inf if k >= ordered.size else float(ordered[k])


def threshold_for_accuracy(
    scores: npt.ArrayLike, edge_correct: npt.ArrayLike, cloud_correct: npt.ArrayLike, target_accuracy: float
) -> float:
    """The highest threshold (least offload) whose cascade accuracy on these samples reaches the target.

    Offloading the k hardest gives accuracy (edge right on the rest + cloud right on the k) / N; the
    smallest such k wins. If no k reaches the target, everything is offloaded (threshold −inf).
    """
    s = np.asarray(scores, dtype=np.float64)
    edge, cloud = np.asarray(edge_correct, dtype=bool), np.asarray(cloud_correct, dtype=bool)
    if not (s.shape == edge.shape == cloud.shape) or s.size == 0:
        raise ConfigError("scores, edge_correct and cloud_correct must be non-empty and of one length")
    order = np.argsort(-s, kind="stable")
    s, edge, cloud = s[order], edge[order], cloud[order]
    # accuracy[k]: the k hardest go to the cloud.
    gain = np.concatenate([[0], np.cumsum(cloud.astype(int) - edge.astype(int))])
    accuracy = (edge.sum() + gain) / s.size
    for k in np.flatnonzero(accuracy >= target_accuracy - 1e-12):
        # Ties: a threshold can only separate k from k+1 when their scores differ.
        if k == 0:
            return float(s[0])
        if k == s.size:
            return -math.inf
        if s[k - 1] > s[k]:
            return float(s[k])
    return -math.inf
