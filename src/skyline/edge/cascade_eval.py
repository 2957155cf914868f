"""`skyline edge eval --strategy cascade`: edge model, cloud model and the cascade, over a real HTTP link.

The cloud model is published (signed) and served by the edge cloud on 127.0.0.1 behind the emulated link; each test input is
answered by a `CascadeRouter` one at a time, so ``latency_p50_ms`` includes the real round trips of the
offloaded inputs. The threshold is calibrated on the validation split only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyline.edge.cascade import CascadeRouter
from skyline.edge.cloud import EdgeCloud, serving_cloud
from skyline.edge.cloud_app import edge_authority
from skyline.edge.cloud_client import CloudClient
from skyline.edge.detector import HardExampleDetector, hardness, threshold_for_accuracy, threshold_for_offload
from skyline.edge.digit_models import DigitModels, predict_proba, train_digit_models
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.errors import ConfigError

CLOUD_MODEL = "cloud-classifier"


@dataclass(frozen=True, slots=True, kw_only=True)
class CascadeEvalConfig:
    """What to evaluate: data, the calibration target (offload or accuracy), the link and the timeout."""

    dataset: str = "digits"
    target_offload: float | None = 0.15
    target_accuracy: float | None = None
    method: str = "margin"
    seed: int = 0
    epochs: int = 20
    cloud_timeout_s: float = 1.0
    link: LinkConditions = field(default_factory=lambda: LinkConditions(latency_ms=5.0, bandwidth_mbps=100.0))

    def __post_init__(self) -> None:
        if (self.target_offload is None) == (self.target_accuracy is None):
            raise ConfigError("give exactly one of target_offload and target_accuracy")
        if self.target_offload is not None and not 0 <= self.target_offload <= 1:
            raise ConfigError(f"target_offload must be in [0, 1], got {self.target_offload}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ConfigError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.cloud_timeout_s <= 0:
            raise ConfigError(f"cloud_timeout_s must be positive, got {self.cloud_timeout_s}")


def calibrate(models: DigitModels, config: CascadeEvalConfig) -> HardExampleDetector:
    """The detector's threshold from the validation split, for the configured target."""
    val = models.splits.val
    edge_probs = predict_proba(models.edge, val.x.numpy())
    scores = hardness(edge_probs, config.method)
    if config.target_offload is not None:
        threshold = threshold_for_offload(scores, config.target_offload)
    else:
        y = val.y.numpy()
        cloud_correct = predict_proba(models.cloud, val.x.numpy()).argmax(axis=1) == y
        assert config.target_accuracy is not None
        threshold = threshold_for_accuracy(
            scores, edge_probs.argmax(axis=1) == y, cloud_correct, config.target_accuracy
        )
    return HardExampleDetector(method=config.method, threshold=threshold)


def evaluate_cascade(
    config: CascadeEvalConfig,
    *,
    models: DigitModels | None = None,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train (unless given), calibrate, serve the cloud model, and answer the test split through the cascade."""
    models = models or train_digit_models(seed=config.seed, epochs=config.epochs, dataset=config.dataset)
    detector = calibrate(models, config)
    test_x, test_y = models.splits.test.x.numpy(), models.splits.test.y.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        cloud_config = serving_cloud(Path(tmp), {CLOUD_MODEL: models.cloud}, models.splits.input_shape)
        authority, token = edge_authority(cloud_config.tokens)
        with (
            EdgeCloud(cloud_config, authority=authority) as cloud,
            LinkProxy(cloud.port, config.link) as link,
        ):
            client = CloudClient(link.url, token=token, timeout_s=config.cloud_timeout_s)
            router = CascadeRouter(
                edge=lambda x: predict_proba(models.edge, x),
                cloud=lambda x: client.infer(CLOUD_MODEL, x),
                detector=detector,
            )
            answers = []
            for row in test_x:
                answers.append(router.answer(row))
                if advance is not None:
                    advance(1)
            client.close()
    labels = np.array([a.label for a in answers])
    return {
        "edge_accuracy": float((predict_proba(models.edge, test_x).argmax(axis=1) == test_y).mean()),
        "cloud_accuracy": float((predict_proba(models.cloud, test_x).argmax(axis=1) == test_y).mean()),
        "cascade_accuracy": float((labels == test_y).mean()),
        "offload_fraction": router.counts.offloaded / len(answers),
        "latency_p50_ms": float(np.median([a.latency_ms for a in answers])),
    }
