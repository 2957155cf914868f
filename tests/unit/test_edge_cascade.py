"""Hard-example scores, threshold calibration and cascade routing on fixed inputs (hand-computed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from skyline.edge.cascade import CascadeRouter
from skyline.edge.detector import HardExampleDetector, hardness, threshold_for_accuracy, threshold_for_offload
from skyline.edge.uplink_store import UplinkStore
from skyline.errors import ConfigError, NotFoundError, UnavailableError

pytestmark = pytest.mark.unit
PROBS = np.array([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [1 / 3, 1 / 3, 1 / 3]])


def test_hardness_scores_by_hand() -> None:
    np.testing.assert_allclose(hardness(PROBS, "max-prob"), [0.1, 0.5, 2 / 3])
    np.testing.assert_allclose(hardness(PROBS, "margin"), [1 - 0.85, 1 - 0.1, 1.0])
    first = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)) / math.log(3)
    np.testing.assert_allclose(hardness(PROBS, "entropy"), [first, hardness(PROBS, "entropy")[1], 1.0])
    with pytest.raises(NotFoundError, match="methods are"):
        hardness(PROBS, "confidence")


def test_threshold_for_offload_takes_the_k_hardest() -> None:
    scores = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]
    threshold = threshold_for_offload(scores, 0.3)  # k = 3: 0.9, 0.8, 0.7 go to the cloud
    assert threshold == 0.6
    assert sum(s > threshold for s in scores) == 3
    assert threshold_for_offload(scores, 0.0) == 0.9  # nothing strictly above the maximum
    assert threshold_for_offload(scores, 1.0) == -math.inf
    assert (
        sum(s > threshold_for_offload([0.5] * 4, 0.5) for s in [0.5] * 4) == 0
    )  # ties: never more than asked
    with pytest.raises(ConfigError):
        threshold_for_offload(scores, 1.5)


def test_threshold_for_accuracy_picks_the_least_offload() -> None:
    scores = [0.9, 0.8, 0.7, 0.1]
    edge = [False, False, True, True]  # edge alone: 2/4
    cloud = [True, True, True, True]
    assert threshold_for_accuracy(scores, edge, cloud, 0.5) == 0.9  # already there: offload nothing
    assert threshold_for_accuracy(scores, edge, cloud, 0.75) == 0.8  # offload the hardest one
    assert threshold_for_accuracy(scores, edge, cloud, 1.0) == 0.7  # the two hardest
    assert (
        threshold_for_accuracy(scores, edge, [False] * 4, 0.9) == -math.inf
    )  # unreachable: all to the cloud


def _edge(x: np.ndarray) -> np.ndarray:
    # Sure (0.9) for positive inputs, unsure (0.4/0.35) for negative ones.
    return np.array([[0.9, 0.05, 0.05] if float(x.sum()) > 0 else [0.4, 0.35, 0.25]], dtype=np.float32)


def _cloud(x: np.ndarray) -> np.ndarray:
    return np.array([[0.0, 0.0, 1.0]], dtype=np.float32)


def _cloud_down(x: np.ndarray) -> np.ndarray:
    raise UnavailableError("cloud did not answer within 0.1 s")


def test_cascade_routes_hard_inputs_to_the_cloud() -> None:
    router = CascadeRouter(
        edge=_edge, cloud=_cloud, detector=HardExampleDetector(method="max-prob", threshold=0.3)
    )
    easy, hard = router.answer(np.ones(4, np.float32)), router.answer(-np.ones(4, np.float32))
    assert (easy.label, easy.source, easy.degraded) == (0, "edge", False)
    assert (hard.label, hard.source, hard.degraded) == (2, "cloud", False)
    assert (router.counts.answered, router.counts.offloaded, router.counts.degraded) == (2, 1, 0)


def test_cascade_degrades_to_the_edge_and_buffers_when_the_cloud_is_down(tmp_path: Path) -> None:
    with UplinkStore(tmp_path / "q.db") as store:
        router = CascadeRouter(
            edge=_edge,
            cloud=_cloud_down,
            detector=HardExampleDetector(method="margin", threshold=0.5),
            uplink=store,
        )
        answer = router.answer(-np.ones(4, np.float32))
        assert (answer.label, answer.source, answer.degraded) == (0, "edge", True)
        [record] = store.peek(5)
        assert record.kind == "hard-example" and record.payload["x"] == [-1.0] * 4
        assert router.counts.buffered == 1
