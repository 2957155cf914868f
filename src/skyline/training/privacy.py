"""Differential privacy: DP-SGD with Opacus (per-sample clipping, Gaussian noise, PRV or RDP accounting).

The pieces are wired by hand rather than through ``PrivacyEngine.make_private`` so that the trainer keeps
its own batching: each step draws a Poisson sample (every training row joins with probability
``q = batch_size / rows``, the sampling the accountant's guarantee assumes) from a generator seeded by
(seed, epoch, step), which makes private runs reproducible and resumable like the others.

The noise multiplier σ is chosen (``opacus.accountants.utils.get_noise_multiplier``) so that the planned
steps spend exactly the target ε at δ; the ε reported is the accountant's for the steps actually taken
(less than the target when early stopping ends training sooner).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from skyline.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


# RDP's note that a larger order might give a slightly tighter bound; the bound given is still valid.
_RDP_NOTE = "Optimal order is the largest alpha"


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


class PrivateTraining:
    """Wraps a model and an optimizer for DP-SGD and keeps the privacy ledger (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        target_epsilon: float,
        delta: float,
        max_grad_norm: float,
        batch_size: int,
        train_rows: int,
        planned_steps: int,
        accountant: str,
        seed: int,
    ) -> None:
        import torch
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        if batch_size >= train_rows:
            raise ConfigError(f"DP-SGD needs batch_size < training rows ({train_rows}), got {batch_size}")
        self.delta = delta
        self.sample_rate = batch_size / train_rows
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_RDP_NOTE, category=UserWarning)
            self.noise_multiplier = float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=self.sample_rate,
                    steps=planned_steps,
                    accountant=accountant,
                )
            )
        self.module = GradSampleModule(model)
        self.noise_generator = torch.Generator().manual_seed(seed + 7919)
        with warnings.catch_warnings():
            # Opacus warns that its default (non-cryptographic) RNG is in use: reproducibility is the point.
            warnings.simplefilter("ignore", UserWarning)
            self.optimizer = DPOptimizer(
                optimizer,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=max_grad_norm,
                expected_batch_size=batch_size,
                generator=self.noise_generator,
            )
        self.accountant = create_accountant(accountant)
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))

    def epsilon(self) -> float:
        """ε spent so far at this run's δ (0 before the first step)."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_RDP_NOTE, category=UserWarning)
            return float(self.accountant.get_epsilon(delta=self.delta))

    def state_dict(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant.state_dict(),
            "noise_generator": self.noise_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state["accountant"])
        self.noise_generator.set_state(state["noise_generator"])


def poisson_batch(rows: int, sample_rate: float, *, seed: int, epoch: int, step: int) -> torch.Tensor:
    """Indices of one Poisson-sampled batch: each row independently with probability ``sample_rate``."""
    import torch

    mixed = ((seed * 1_000_003 + epoch) * 1_000_033 + step) * 2 + 1  # not hash(): it is salted per process
    generator = torch.Generator().manual_seed(mixed % 2**63)
    return torch.nonzero(torch.rand(rows, generator=generator) < sample_rate).flatten()
