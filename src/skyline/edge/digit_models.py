"""The edge/cloud model pair used by cascade evaluation, the demo and federated learning: digits, trained here.

The edge model is small (``mlp``: 64-128-64-10, ~17k parameters), the cloud model big
(``cnn``: two conv blocks, ~170k parameters); both come from `skyline.training`'s registry, data splits and
fit loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skyline.training.data import DatasetSplits, Split, load_dataset
from skyline.training.fit import FitConfig, fit
from skyline.training.models import build_model

FloatArray = npt.NDArray[np.float32]


def fit_settings(*, epochs: int = 30, seed: int = 0) -> FitConfig:
    """Plain mini-batch Adam (lr 3e-3, batches of 64, weight decay 1e-4); enough for digits in seconds."""
    return FitConfig(epochs=epochs, lr=3e-3, batch_size=64, weight_decay=1e-4, seed=seed, optimizer="adam")


def fit_model(model: nn.Module, split: Split, settings: FitConfig) -> nn.Module:
    """Train ``model`` on ``split`` with `skyline.training.fit` (cross-entropy); returns it in eval mode."""
    fit(model, split.x, split.y, settings)
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
    settings = fit_settings(epochs=epochs, seed=seed)
    return DigitModels(
        splits=splits,
        edge=fit_model(edge, splits.train, settings),
        cloud=fit_model(cloud, splits.train, settings),
    )
