"""A federated client's local round (and the centralized baseline): the project's one training loop
(`skyline.training.fit`) with SGD on one client's rows.

With ``proximal_mu > 0`` each step adds FedProx's proximal gradient μ·(w − w_global), the gradient of
(μ/2)·‖w − w_global‖² (Li et al. 2018), which keeps a client's model near the global one on non-IID data.
It is added to the final gradient (after DP-SGD's clipping and noise: it does not read the data), so the
loss reported is the data's alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skyline.errors import ConfigError
from skyline.training.fit import FitConfig, Hook, StepHooks, evaluate, fit


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTraining:
    epochs: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.proximal_mu < 0:
            raise ConfigError("epochs and batch_size must be >= 1, lr > 0 and proximal_mu >= 0")

    def fit_config(self, *, seed: int) -> FitConfig:
        """The loop's settings: SGD with momentum, ``epochs`` passes in batches of ``batch_size``."""
        return FitConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=seed,
            optimizer="sgd",
            momentum=self.momentum,
        )


def proximal_gradient(model: nn.Module, mu: float) -> Hook | None:
    """A hook adding μ·(w − w_start) to every gradient, w_start the weights now (None when μ is 0)."""
    if mu <= 0:
        return None
    anchor = [p.detach().clone() for p in model.parameters()]

    def add() -> None:
        with torch.no_grad():
            for p, a in zip(model.parameters(), anchor, strict=True):
                if p.grad is not None:
                    p.grad.add_(p - a, alpha=mu)

    return add


def train_local(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: LocalTraining, *, seed: int
) -> float:
    """Train ``model`` in place; returns the mean training loss of the last epoch."""
    hooks = StepHooks(before_update=proximal_gradient(model, settings.proximal_mu))
    return fit(model, x, y, settings.fit_config(seed=seed), hooks=hooks)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on ``(x, y)``."""
    return evaluate(model, x, y)[1] or 0.0
