"""The one training loop: `train_step`, `run_epoch` and `fit` (in-memory data).

`skyline train`'s session, compression's fine-tuning and distillation and a federated client's round all
go through `run_epoch`; what differs comes in as hooks: ``loss(net, x, y)`` (distillation's soft targets),
``before_update`` (the gradients are final, clipped and noised under DP-SGD: FedProx's proximal gradient),
``after_update`` (a pruner zeroes its weights again) and ``after_step(Step)`` (progress, checkpoints,
outside the timed region). An empty Poisson batch still takes its step: the accountant counts it, and its
noise keeps the batch's emptiness private.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from skyline.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from skyline.training.privacy import DPSGD

LossFn = Callable[["nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (net, x, y) → mean loss
Hook = Callable[[], None]
OptimizerName = Literal["sgd", "adam", "adamw"]
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True, slots=True)
class Step:
    """One optimizer step, as `after_step` hooks see it."""

    index: int  # within its epoch
    rows: int  # examples in the batch (this rank's)
    loss: float  # mean loss on them; 0.0 for an empty batch
    seconds: float  # forward, backward, update and ``after_update``


@dataclass(frozen=True, slots=True, kw_only=True)
class StepHooks:
    """What a caller adds to every step (see the module docstring)."""

    before_update: Hook | None = None
    after_update: Hook | None = None
    after_step: Callable[[Step], None] | None = None


def output_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the single output (``regression``), else mean cross-entropy of the logits."""
    from torch.nn import functional

    if task == "regression":
        return functional.mse_loss(output.squeeze(-1), target)
    return functional.cross_entropy(output, target)


def task_loss(task: str) -> LossFn:
    """The loss of a dataset's task, ``classification`` or ``regression``."""
    return lambda net, x, y: output_loss(task, net(x), y)


cross_entropy = task_loss("classification")


def make_optimizer(
    name: str, model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw`` over ``model``'s parameters."""
    import torch

    params = list(model.parameters())
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: LossFn,
    before_update: Hook | None = None,
) -> float:
    """One optimizer step on the batch ``(x, y)``; returns its mean loss (0.0 when the batch is empty)."""
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        # Opacus's per-sample-gradient hooks on the input layer make torch say this every step; harmless.
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        value = loss(net, x, y) if len(y) else net(x).sum()  # an empty batch: zero gradient, noise only
        value.backward()
    if before_update is not None:
        before_update()
    optimizer.step()
    return float(value.detach()) if len(y) else 0.0


def run_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    batches: Iterable[tuple[int, torch.Tensor]],
    loss: LossFn,
    *,
    hooks: StepHooks = StepHooks(),
    device: str = "cpu",
) -> tuple[float, int]:
    """A step for each ``(index, rows)`` of ``batches`` on those rows of ``data``; returns the sum of the
    batches' mean losses and the number of non-empty batches."""
    x, y = data
    total, counted = 0.0, 0
    for index, rows in batches:
        started = time.perf_counter()
        value = train_step(net, optimizer, x[rows].to(device), y[rows].to(device), loss, hooks.before_update)
        if hooks.after_update is not None:
            hooks.after_update()
        elapsed = time.perf_counter() - started
        total, counted = total + value, counted + (len(rows) > 0)
        if hooks.after_step is not None:
            hooks.after_step(Step(index=index, rows=len(rows), loss=value, seconds=elapsed))
    return total, counted


@dataclass(frozen=True, slots=True, kw_only=True)
class FitConfig:
    """How `fit` trains: ``epochs`` passes over the rows in shuffled batches of ``batch_size``."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0  # the shuffling (not DP-SGD's sampling or noise: those are secret)
    optimizer: OptimizerName = "adam"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(
                "fit needs epochs >= 0, batch_size >= 1, lr > 0 and weight_decay >= 0; got "
                f"{self.epochs}, {self.batch_size}, {self.lr}, {self.weight_decay}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    def steps_per_epoch(self, rows: int) -> int:
        """Batches in one pass over ``rows`` (the last one may be short)."""
        return max(1, math.ceil(rows / self.batch_size))


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
    *,
    loss: LossFn = cross_entropy,
    hooks: StepHooks = StepHooks(),
    privacy: DPSGD | None = None,
) -> float:
    """Train ``model`` in place on ``(x, y)`` and leave it in eval mode; returns the last epoch's mean loss.

    Each epoch visits the rows in the order ``randperm(rows)`` of a generator seeded with ``config.seed``.
    With ``privacy`` (a `DPSGD` made for ``model`` and an optimizer of it) every step is a DP-SGD step on a
    Poisson batch it samples, and ``hooks.before_update`` must have gone to the `DPSGD` instead.
    """
    import torch

    if privacy is not None and hooks.before_update is not None:
        raise ConfigError("under DP-SGD, before_update belongs to the DPSGD (it runs after the noise)")
    generator = torch.Generator().manual_seed(config.seed)
    steps = config.steps_per_epoch(len(y))
    net, optimizer = (model, None) if privacy is None else (privacy.module, privacy.optimizer)
    if optimizer is None:
        optimizer = make_optimizer(
            config.optimizer, model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    net.train()
    last = 0.0
    for _ in range(config.epochs):
        if privacy is None:
            order = torch.randperm(len(y), generator=generator)
            batches = ((k, order[k * config.batch_size : (k + 1) * config.batch_size]) for k in range(steps))
        else:
            batches = ((k, privacy.sample(len(y))) for k in range(steps))
        total, counted = run_epoch(net, optimizer, (x, y), batches, loss, hooks=hooks)
        last = total / max(counted, 1)
    model.eval()
    return last


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
    device: str = "cpu",
    batch: int = 1024,
) -> tuple[float, float | None]:
    """(mean loss, accuracy as a fraction or None for regression) of ``model`` on ``(x, y)``."""
    import torch

    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            output, target = model(x[start : start + batch].to(device)), y[start : start + batch].to(device)
            total_loss += float(output_loss(task, output, target)) * len(target)
            if task == "classification":
                correct += int((output.argmax(dim=1) == target).sum())
    model.train(was_training)
    rows = max(1, len(y))
    return total_loss / rows, (correct / rows if task == "classification" else None)
