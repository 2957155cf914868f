"""Differential privacy in federated learning, on the project's one DP-SGD and accounting
(`skyline.training.privacy`), reported as a `PrivacyReport` like every other run.

Record level (the default): DP-SGD in every client's local round. A row lives on one client only, so its
privacy loss is that client's DP-SGD over all rounds and local steps: rounds × epochs × ⌈n/batch⌉ steps at
the Poisson rate q = 1/⌈n/batch⌉, composed with Rényi DP. Each client picks the smallest σ that keeps its
ε ≤ the target; the run reports the largest ε any client spent. Noise and sampling are secret, so DP runs
are not bit-reproducible.

Client level: every client's update is clipped to norm C and the server adds Gaussian noise σ·C to their
sum once a round, every client taking part (sampling rate 1): ``rounds`` steps of the same accountant.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from skyline.errors import ConfigError
from skyline.federated.local_training import LocalTraining, proximal_gradient
from skyline.training.fit import FitConfig, fit, make_optimizer
from skyline.training.privacy import DPSGD, Accountant, PrivacyReport, epsilon_for, noise_multiplier_for

ACCOUNTANT: Accountant = "rdp"


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


@functools.lru_cache(maxsize=256)
def plan_for(privacy: RecordPrivacy, *, rows: int, epochs: int, batch_size: int) -> PrivacyPlan:
    """The noise multiplier a client with ``rows`` rows needs, and the ε its whole participation costs."""
    if rows < 1:
        raise ConfigError("a client needs at least one training row for DP-SGD")
    steps_per_epoch = FitConfig(batch_size=batch_size).steps_per_epoch(rows)  # as `fit` will take them
    sample_rate = 1.0 / steps_per_epoch  # about batch_size / rows, and 1 for a client smaller than a batch
    steps = privacy.rounds * epochs * steps_per_epoch
    sigma = noise_multiplier_for(
        target_epsilon=privacy.target_epsilon,
        sample_rate=sample_rate,
        steps=steps,
        delta=privacy.delta,
        accountant=ACCOUNTANT,
    )
    spent = epsilon_for(
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        steps=steps,
        delta=privacy.delta,
        accountant=ACCOUNTANT,
    )
    return PrivacyPlan(rows, sample_rate, steps, sigma, spent)


def record_level_report(
    privacy: RecordPrivacy, *, client_rows: Iterable[int], epochs: int, batch_size: int
) -> PrivacyReport:
    """The run's record-level guarantee: that of the client whose plan spends the most ε."""
    plans = [plan_for(privacy, rows=rows, epochs=epochs, batch_size=batch_size) for rows in client_rows]
    worst = max(plans, key=lambda plan: plan.epsilon)
    return PrivacyReport(
        epsilon=worst.epsilon,
        delta=privacy.delta,
        unit="record",
        accountant=ACCOUNTANT,
        noise_multiplier=worst.noise_multiplier,
        clipping_norm=privacy.clipping_norm,
    )


def client_level_plan(
    *, target_epsilon: float, rounds: int, delta: float, clipping_norm: float
) -> PrivacyReport:
    """Client-level DP: the server's noise multiplier for ``target_epsilon`` and the ε it spends."""
    sigma = noise_multiplier_for(
        target_epsilon=target_epsilon, sample_rate=1.0, steps=rounds, delta=delta, accountant=ACCOUNTANT
    )
    return PrivacyReport(
        epsilon=epsilon_for(
            noise_multiplier=sigma, sample_rate=1.0, steps=rounds, delta=delta, accountant=ACCOUNTANT
        ),
        delta=delta,
        unit="client",
        accountant=ACCOUNTANT,
        noise_multiplier=sigma,
        clipping_norm=clipping_norm,
    )


def train_private(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: LocalTraining,
    privacy: RecordPrivacy,
) -> float:
    """One round of local DP-SGD on ``model`` (in place); returns the mean loss of the last epoch."""
    plan = plan_for(privacy, rows=len(y), epochs=settings.epochs, batch_size=settings.batch_size)
    optimizer = make_optimizer("sgd", model, lr=settings.lr, momentum=settings.momentum)
    dp = DPSGD(
        model,
        optimizer,
        noise_multiplier=plan.noise_multiplier,
        clipping_norm=privacy.clipping_norm,
        sample_rate=plan.sample_rate,
        expected_batch_size=max(1, round(plan.sample_rate * len(y))),
        delta=privacy.delta,
        accountant=ACCOUNTANT,
        after_noise=proximal_gradient(model, settings.proximal_mu),
    )
    try:
        return fit(model, x, y, settings.fit_config(seed=0), privacy=dp)
    finally:
        dp.detach()
