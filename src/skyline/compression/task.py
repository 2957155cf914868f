"""What a model is judged on: the inputs it takes, real sample batches, and the task metric.

A `Task` is independent of the model's form: the same task evaluates a PyTorch module, an ONNX file or
an int8 ONNX file through the one `Predictor` signature, so every variant is measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from skyline.errors import ConfigError

Inputs = dict[str, np.ndarray]
TaskKind = Literal["cnn", "transformer"]


class Predictor(Protocol):
    """Anything that maps named numpy inputs (batch first) to one numpy output (batch first)."""

    def __call__(self, inputs: Inputs) -> np.ndarray:
        """Run one batch and return the model's output (logits or embeddings)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassificationData:
    """Labelled tensors for fine-tuning and distillation: ``x`` float (N, ...), ``y`` int64 (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ConfigError("ClassificationData: x and y must have the same length in each split")
        if len(self.x_train) == 0 or len(self.x_test) == 0:
            raise ConfigError("ClassificationData: the train and test splits must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """How to feed, calibrate and judge one model.

    ``sample(n)`` returns a fixed batch of ``n`` real inputs (the same for every variant);
    ``calibration()`` yields batches for static int8 calibration; ``evaluate(predictor)`` returns the task
    metric in percent (higher is better). ``data`` is present for classifiers, which can be fine-tuned.
    ``compare(variant, reference)`` gives fidelity figures against the fp32 model (e.g. mean cosine).
    """

    name: str
    kind: TaskKind
    metric_name: str
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    sample: Callable[[int], Inputs]
    calibration: Callable[[], Iterable[Inputs]]
    evaluate: Callable[[Predictor], float]
    data: ClassificationData | None = None
    compare: Callable[[Predictor, Predictor], dict[str, float]] | None = None
    max_batch: int = 256
    attention_shape: tuple[int, int] | None = None  # (heads, hidden size) of a transformer, for ORT fusion

    def __post_init__(self) -> None:
        if self.kind not in ("cnn", "transformer"):
            raise ConfigError(f"task kind must be 'cnn' or 'transformer', got {self.kind!r}")
        if not self.input_names:
            raise ConfigError(f"task {self.name!r} needs at least one input name")
        if self.max_batch < 1:
            raise ConfigError(f"task max_batch must be >= 1, got {self.max_batch}")


def accuracy_percent(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of ``logits`` (N, C) against integer ``labels`` (N,)."""
    if len(logits) != len(labels):
        raise ConfigError(f"{len(logits)} predictions for {len(labels)} labels")
    return float((logits.argmax(axis=1) == labels).mean() * 100.0)


def evaluate_in_batches(
    predictor: Predictor, x: np.ndarray, y: np.ndarray, input_name: str, batch: int = 256
) -> float:
    """Accuracy in percent of a single-input classifier over ``x`` in batches of ``batch``."""
    outputs = [predictor({input_name: x[i : i + batch]}) for i in range(0, len(x), batch)]
    return accuracy_percent(np.concatenate(outputs), y)


def classification_task(name: str, data: ClassificationData, *, input_name: str = "input") -> Task:
    """A Task for an image classifier judged by test accuracy, calibrated on 256 training images."""
    x_test, y_test = data.x_test.numpy(), data.y_test.numpy()
    x_train = data.x_train.numpy()

    def sample(n: int) -> Inputs:
        index = np.arange(n) % len(x_test)
        return {input_name: np.ascontiguousarray(x_test[index])}

    def calibration() -> list[Inputs]:
        return [{input_name: x_train[i : i + 32]} for i in range(0, min(256, len(x_train)), 32)]

    def evaluate(predictor: Predictor) -> float:
        return evaluate_in_batches(predictor, x_test, y_test, input_name)

    return Task(
        name=name,
        kind="cnn",
        metric_name="test accuracy (%)",
        input_names=(input_name,),
        dynamic_axes={input_name: {0: "batch"}},
        sample=sample,
        calibration=calibration,
        evaluate=evaluate,
        data=data,
    )
