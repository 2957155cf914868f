"""The edge/cloud model pair used by cascade evaluation, the demo and federated learning: digits, trained here.

The edge model is small (``mlp``: 64-128-64-10, ~17k parameters), the cloud model big
(``cnn``: two conv blocks, ~170k parameters); both come from `skyline.training`'s registry and data splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skyline.errors import ConfigError
from skyline.training.data import DatasetSplits, Split, load_dataset
from skyline.training.models import build_model

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, kw_only=True)
class FitSettings:
    """Plain mini-batch Adam; enough for digits in a few seconds on one core."""

    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"epochs, batch_size and lr must be positive, got {self.epochs}, {self.batch_size}, {self.lr}"
            )


def fit(model: nn.Module, split: Split, settings: FitSettings) -> nn.Module:
    """Train ``model`` on ``split`` with cross-entropy; returns it in eval mode."""
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(split), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            optimizer.zero_grad()
            loss_fn(model(split.x[rows]), split.y[rows]).backward()
            optimizer.step()
    return model.eval()


def predict_proba(model: nn.Module, x: npt.ArrayLike) -> FloatArray:
    """Class probabilities (N, classes) for inputs ``x`` (N, *input_shape)."""
    with torch.inference_mode():
        logits = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        return torch.softmax(logits, dim=1).numpy().astype(np.float32)


def accuracy(model: nn.Module, split: Split) -> float:
    return float((predict_proba(model, split.x.numpy()).argmax(axis=1) == split.y.numpy()).mean())


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitModels:
    splits: DatasetSplits
    edge: nn.Module
    cloud: nn.Module


def train_digit_models(
    *,
    seed: int = 0,
    edge_model: str = "mlp",
    cloud_model: str = "cnn",
    epochs: int = 30,
    dataset: str = "digits",
) -> DigitModels:
    """Load ``dataset`` (seeded split) and train the edge and the cloud model on its training split."""
    splits = load_dataset(dataset, seed=seed)
    torch.manual_seed(seed)
    edge = build_model(edge_model, splits.input_shape, splits.num_classes)
    cloud = build_model(cloud_model, splits.input_shape, splits.num_classes)
    settings = FitSettings(epochs=epochs, seed=seed)
    return DigitModels(
        splits=splits, edge=fit(edge, splits.train, settings), cloud=fit(cloud, splits.train, settings)
    )
