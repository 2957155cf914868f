"""Differential privacy: the one DP-SGD (Abadi et al. 2016, with Opacus) and its accounting.

`DPSGD` wraps a model and an optimizer: per-example gradients clipped to L2 norm C, Gaussian noise σ·C
added to their sum, steps on Poisson batches (each row with probability q, as the accountant assumes), and
a PRV or RDP accountant counting the steps. Noise and sampling come from the operating system's entropy,
never from the run's seed: noise anyone could regenerate protects nothing, and a batch anyone can recompute
gives no amplification by sampling. Private runs are not bit-reproducible; checkpoints hold the accountant,
never a generator state. The same accounting serves ``record``-level (a training row) and ``client``-level
(a federated client's data: rate 1, a step a round) privacy, reported alike as a `PrivacyReport`.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from skyline.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

Accountant = Literal["prv", "rdp"]
PrivacyUnit = Literal["record", "client"]
ACCOUNTANTS = ("prv", "rdp")
# Opacus notes when the best Rényi order sits at the edge of its grid; ε is then a valid upper bound.
_EDGE_ORDER = "Optimal order is the (smallest|largest) alpha"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyReport:
    """The (ε, δ)-DP guarantee a run gives, and what it is about."""

    epsilon: float
    delta: float
    unit: PrivacyUnit  # neighbouring datasets differ in one training row, or in one client's data
    accountant: Accountant
    noise_multiplier: float  # σ: noise standard deviation over the clipping norm
    clipping_norm: float  # C: of each example's gradient (record) or each client's update (client)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: ``(ε = 2.98, δ = 1e-05) record-level DP, PRV accountant``."""
        return (
            f"(ε = {self.epsilon:.3g}, δ = {self.delta:.3g}) {self.unit}-level DP, "
            f"{self.accountant.upper()} accountant, σ = {self.noise_multiplier:.3g}, C = {self.clipping_norm:g}"
        )


def _check(accountant: str, delta: float, sample_rate: float, steps: int) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if not 0 < delta < 1 or not 0 < sample_rate <= 1 or steps < 1:
        raise ConfigError(
            f"DP accounting needs δ in (0, 1), a sampling rate in (0, 1] and steps >= 1; got {delta}, "
            f"{sample_rate}, {steps}"
        )


def epsilon_for(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant
) -> float:
    """ε after ``steps`` steps of the sampled Gaussian mechanism (σ, rate q) at δ."""
    from opacus.accountants import create_accountant

    _check(accountant, delta, sample_rate, steps)
    if not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier must be > 0, got {noise_multiplier}")
    ledger = create_accountant(accountant)
    ledger.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EDGE_ORDER, category=UserWarning)
        return float(ledger.get_epsilon(delta=delta))


def noise_multiplier_for(
    *, target_epsilon: float, sample_rate: float, steps: int, delta: float, accountant: Accountant
) -> float:
    """The σ whose ``steps`` steps at rate q spend at most ``target_epsilon`` (within 0.01) at δ."""
    from opacus.accountants.utils import get_noise_multiplier

    _check(accountant, delta, sample_rate, steps)
    if not target_epsilon > 0:
        raise ConfigError(f"the target ε must be > 0, got {target_epsilon}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EDGE_ORDER, category=UserWarning)
        try:
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        except ValueError as exc:  # Opacus: "The privacy budget is too low."
            raise ConfigError(f"no noise multiplier reaches ε = {target_epsilon}: {exc}; raise it") from None
    return float(sigma)


def prepare_model(model: nn.Module, *, fix: bool) -> tuple[nn.Module, tuple[str, ...]]:
    """Check that Opacus can compute per-sample gradients of ``model``; fix it (BatchNorm → GroupNorm) or refuse."""
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if not problems:
        return model, ()
    described = ", ".join(sorted({p.args[0].split(" ")[0] if p.args else type(p).__name__ for p in problems}))
    if not fix:
        raise ConfigError(
            f"differential privacy cannot train this model as it is (unsupported layers: {described}; a batch "
            "statistic mixes samples, so per-sample gradients are undefined). Use a model without "
            "BatchNorm (e.g. --model cnn) or allow the fix (dp_fix_model: true replaces BatchNorm by GroupNorm)"
        )
    fixed = ModuleValidator.fix(model)
    remaining = ModuleValidator.validate(fixed, strict=False)
    if remaining:
        raise ConfigError(f"differential privacy cannot train this model even after fixing it: {remaining}")
    return fixed, (
        f"model changed for differential privacy: {described} replaced by GroupNorm "
        "(a batch statistic mixes samples, so per-sample gradients would be undefined)",
    )


def secret_generator() -> torch.Generator:
    """A torch generator seeded from the operating system's entropy (see the module docstring)."""
    import torch

    return torch.Generator().manual_seed(secrets.randbits(63))


class DPSGD:
    """DP-SGD around ``model`` and ``optimizer`` (see the module docstring); train through `module` and
    `optimizer`, draw batches with `sample`. ``after_noise`` runs after clipping and noise, before the
    update (FedProx's proximal gradient: it does not read the data, so the step stays as private)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        clipping_norm: float,
        sample_rate: float,
        expected_batch_size: int,
        delta: float,
        accountant: Accountant = "prv",
        after_noise: Callable[[], None] | None = None,
    ) -> None:
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer

        _check(accountant, delta, sample_rate, 1)
        if not noise_multiplier > 0 or not clipping_norm > 0:
            raise ConfigError(
                f"DP-SGD needs σ > 0 and a clipping norm > 0, got {noise_multiplier}, {clipping_norm}"
            )
        self.noise_multiplier, self.clipping_norm = noise_multiplier, clipping_norm
        self.sample_rate, self.delta, self.accountant_name = sample_rate, delta, accountant
        self._random = secret_generator()
        self.module = GradSampleModule(model)
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=clipping_norm,
            expected_batch_size=expected_batch_size,
            generator=self._random,
        )
        self.accountant = create_accountant(accountant)
        count_step = self.accountant.get_optimizer_hook_fn(sample_rate=sample_rate)

        def step_hook(optimizer: Any) -> None:  # Opacus calls it after the noise, before the update
            count_step(optimizer)
            if after_noise is not None:
                after_noise()

        self.optimizer.attach_step_hook(step_hook)

    def sample(self, rows: int) -> torch.Tensor:
        """The row indices of one Poisson batch: every row independently with probability q."""
        import torch

        return torch.nonzero(torch.rand(rows, generator=self._random) < self.sample_rate).flatten()

    def epsilon(self) -> float:
        """ε spent so far at this run's δ (0 before the first step)."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_EDGE_ORDER, category=UserWarning)
            return float(self.accountant.get_epsilon(delta=self.delta))

    def report(self) -> PrivacyReport:
        """The record-level guarantee of the steps taken so far."""
        return PrivacyReport(
            epsilon=self.epsilon(),
            delta=self.delta,
            unit="record",
            accountant=self.accountant_name,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=self.clipping_norm,
        )

    def detach(self) -> None:
        """Take Opacus's hooks off the model (it goes on as a plain module)."""
        self.module.remove_hooks()

    def state_dict(self) -> dict[str, Any]:
        """The accountant, for checkpoints (no generator state: it would reveal the noise)."""
        return {"accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state["accountant"])
