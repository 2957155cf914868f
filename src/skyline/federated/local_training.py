"""The local step of federated learning, also used for the centralized baseline: SGD epochs on one dataset.

With ``proximal_mu > 0`` the loss gains FedProx's proximal term (μ/2)·‖w − w_global‖² (Li et al. 2018),
which keeps a client's model near the global one on non-IID data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skyline.errors import ConfigError


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


def train_local(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: LocalTraining, *, seed: int
) -> float:
    """Train ``model`` in place; returns the mean training loss of the last epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    anchor = [p.detach().clone() for p in model.parameters()] if settings.proximal_mu > 0 else []
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    last = 0.0
    for _ in range(settings.epochs):
        order = torch.randperm(len(y), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(y), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[rows]), y[rows])
            if anchor:
                proximal = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
                loss = loss + settings.proximal_mu / 2 * proximal
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        last = total / max(batches, 1)
    model.eval()
    return last


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(dim=1) == y).float().mean())
