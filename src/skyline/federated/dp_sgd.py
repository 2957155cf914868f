"""Record-level differential privacy for federated clients: DP-SGD (Abadi et al. 2016) with Opacus.

Every local step samples a Poisson batch (each row with probability q = batch_size / n), clips each
example's gradient to L2 norm ``C`` (per-example gradients from Opacus' ``GradSampleModule``), adds
Gaussian noise of standard deviation ``σ·C`` to the sum and divides by the expected batch size
(Opacus' ``DPOptimizer``). One row lives on one client only, so a row's privacy loss is that of its
client's DP-SGD over all rounds and local steps: rounds × epochs × ⌈n/batch⌉ steps at rate q, composed
with Rényi DP (Opacus' RDP accountant). Each client picks the smallest σ that keeps its ε ≤ the target,
and the run reports the largest ε any client spent.

Noise comes from a generator seeded from the OS's entropy, never from the run's seed: noise that anyone
who knows the seed could regenerate would protect nothing. DP runs are therefore not bit-reproducible.
"""

from __future__ import annotations

import functools
import math
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skyline.errors import ConfigError
from skyline.federated.local_training import LocalTraining
from skyline.federated.privacy import epsilon_for, noise_for_epsilon


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPrivacy:
    """The record-level DP budget of a whole run: ε at δ over ``rounds`` rounds of local DP-SGD."""

    target_epsilon: float
    delta: float = 1e-5
    clipping_norm: float = 1.0
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.target_epsilon <= 0 or not 0 < self.delta < 1 or self.clipping_norm <= 0 or self.rounds < 1:
            raise ConfigError(
                "record-level DP needs target ε > 0, δ in (0, 1), clipping norm > 0 and rounds >= 1; got "
                f"{self.target_epsilon}, {self.delta}, {self.clipping_norm}, {self.rounds}"
            )


@dataclass(frozen=True, slots=True)
class PrivacyPlan:
    """What one client with ``rows`` training rows does to stay within the budget, and the ε it spends."""

    rows: int
    sample_rate: float
    steps: int
    noise_multiplier: float
    epsilon: float


def plan_for(privacy: RecordPrivacy, *, rows: int, epochs: int, batch_size: int) -> PrivacyPlan:
    """The noise multiplier a client with ``rows`` rows needs, and the ε its whole participation costs."""
    return _plan(privacy, rows, epochs, batch_size)


@functools.lru_cache(maxsize=256)
def _plan(privacy: RecordPrivacy, rows: int, epochs: int, batch_size: int) -> PrivacyPlan:
    if rows < 1:
        raise ConfigError("a client needs at least one training row for DP-SGD")
    steps_per_epoch = max(1, math.ceil(rows / batch_size))
    sample_rate = 1.0 / steps_per_epoch  # Opacus' DPDataLoader: q = 1 / len(loader)
    steps = privacy.rounds * epochs * steps_per_epoch
    sigma = noise_for_epsilon(
        target_epsilon=privacy.target_epsilon, rounds=steps, sample_rate=sample_rate, delta=privacy.delta
    )
    spent = epsilon_for(noise_multiplier=sigma, rounds=steps, sample_rate=sample_rate, delta=privacy.delta)
    return PrivacyPlan(rows, sample_rate, steps, sigma, spent)


def train_private(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: LocalTraining,
    privacy: RecordPrivacy,
) -> float:
    """One round of local DP-SGD on ``model`` (in place); returns the mean loss of the last epoch.

    FedProx's proximal gradient μ·(w − w_global) is added after the noise: it does not touch the data, so
    the result stays as private as the noisy gradient (post-processing).
    """
    plan = plan_for(privacy, rows=len(y), epochs=settings.epochs, batch_size=settings.batch_size)
    noise = torch.Generator().manual_seed(secrets.randbits(63))
    anchor = [p.detach().clone() for p in model.parameters()] if settings.proximal_mu > 0 else []
    with warnings.catch_warnings():
        # Opacus suggests its CSPRNG (secure_mode, needs torchcsprng); noise is OS-seeded instead. Its
        # per-example hooks fire on layers whose inputs (the data) need no gradient: torch notes that.
        warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        return _dp_sgd(model, x, y, settings, privacy.clipping_norm, plan, anchor, noise)


def private_optimizer(
    model: nn.Module,
    settings: LocalTraining,
    *,
    clipping_norm: float,
    noise_multiplier: float,
    expected_batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[Any, Any]:
    """Opacus' per-example gradients (``GradSampleModule``) and its clipping + noising SGD (``DPOptimizer``)."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    wrapped = GradSampleModule(model)
    optimizer = DPOptimizer(
        torch.optim.SGD(wrapped.parameters(), lr=settings.lr, momentum=settings.momentum),
        noise_multiplier=noise_multiplier,
        max_grad_norm=clipping_norm,
        expected_batch_size=expected_batch_size,
        generator=generator,
    )
    return wrapped, optimizer


def _dp_sgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: LocalTraining,
    clipping_norm: float,
    plan: PrivacyPlan,
    anchor: list[torch.Tensor],
    noise: torch.Generator,
) -> float:
    from opacus.data_loader import DPDataLoader

    wrapped, optimizer = private_optimizer(
        model,
        settings,
        clipping_norm=clipping_norm,
        noise_multiplier=plan.noise_multiplier,
        expected_batch_size=max(1, round(plan.sample_rate * len(y))),
        generator=noise,
    )
    loader = DPDataLoader.from_data_loader(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=settings.batch_size),
        generator=noise,
    )
    loss_fn = nn.CrossEntropyLoss()
    wrapped.train()
    last = 0.0
    for _ in range(settings.epochs):
        total, batches = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            # An empty Poisson batch still takes its (pure-noise) step, as the accountant assumes.
            loss = loss_fn(wrapped(xb), yb) if len(yb) else wrapped(xb).sum()
            loss.backward()
            if len(yb):
                total, batches = total + float(loss.detach()), batches + 1
            if optimizer.pre_step():
                for p, a in zip(model.parameters(), anchor, strict=False):
                    if p.grad is not None:
                        p.grad.add_(p.detach() - a, alpha=settings.proximal_mu)
                optimizer.original_optimizer.step()
        last = total / max(batches, 1)
    wrapped.remove_hooks()
    model.eval()
    return last
