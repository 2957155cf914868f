"""The one DP-SGD: ε is the accountant's, noise and sampling are secret, one example moves the clipped sum by
at most C; models Opacus cannot handle are fixed or refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn

from skyline.errors import ConfigError
from skyline.training.config import TrainConfig
from skyline.training.fit import FitConfig, fit
from skyline.training.models import build_model
from skyline.training.privacy import DPSGD, epsilon_for, noise_multiplier_for, prepare_model
from skyline.training.trainer import read_result, train

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_reported_epsilon_is_the_accountants_for_the_steps_taken(tmp_path: Path, accountant: str) -> None:
    config = TrainConfig(
        dataset="digits", model="linear", epochs=2, batch_size=64, lr=0.05, optimizer="sgd", patience=0,
        dp_epsilon=3.0, dp_delta=1e-5, max_grad_norm=1.0, dp_accountant=accountant,  # type: ignore[arg-type]
        out_dir=tmp_path, export_onnx=False, plot=False,
    )  # fmt: skip
    result = train(config)
    train_rows, steps = 1168, 2 * (1168 // 64)  # 1797 − 270 (val) − 359 (test); 18 steps an epoch
    sample_rate = 64 / train_rows
    sigma = get_noise_multiplier(
        target_epsilon=3.0, target_delta=1e-5, sample_rate=sample_rate, steps=steps, accountant=accountant
    )
    reference = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    reference.history = [(sigma, sample_rate, steps)]
    assert result.epsilon == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-6)
    assert result.epsilon == pytest.approx(3.0, abs=0.05)  # σ was chosen to spend the target in these steps
    assert [h.epsilon for h in result.history][-1] == result.epsilon
    assert result.metrics()["epsilon"] == result.epsilon
    assert result.privacy is not None and result.privacy.epsilon == result.epsilon
    assert (result.privacy.unit, result.privacy.accountant, result.privacy.delta) == (
        "record",
        accountant,
        1e-5,
    )
    assert result.privacy.noise_multiplier == pytest.approx(sigma) and result.privacy.clipping_norm == 1.0
    assert read_result(tmp_path).privacy == result.privacy  # result.json keeps the whole guarantee


def test_batchnorm_is_replaced_with_a_notice_or_refused(tmp_path: Path) -> None:
    fixed, notices = prepare_model(build_model("cnn-bn", (1, 8, 8), 10), fix=True)
    assert notices == (
        "model changed for differential privacy: BatchNorm replaced by GroupNorm "
        "(a batch statistic mixes samples, so per-sample gradients would be undefined)",
    )
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert prepare_model(build_model("cnn", (1, 8, 8), 10), fix=False)[1] == ()  # nothing to fix
    config = TrainConfig(model="cnn-bn", dp_epsilon=3.0, dp_fix_model=False, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="without BatchNorm"):
        train(config)


def _tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _dp(model: nn.Module, *, clipping_norm: float = 1.0, sample_rate: float = 0.25) -> DPSGD:
    return DPSGD(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=1.0,
        clipping_norm=clipping_norm,
        sample_rate=sample_rate,
        expected_batch_size=8,
        delta=1e-5,
        accountant="rdp",
    )


def test_dp_sgd_noise_and_sampling_never_follow_the_run_seed() -> None:
    x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    config = FitConfig(epochs=1, batch_size=8, seed=0, optimizer="sgd")
    private, plain = [], []
    for _ in range(2):
        model = _tiny()
        dp = _dp(model)
        fit(model, x, y, config, privacy=dp)
        dp.detach()
        private.append(model[0].weight.detach().clone())
        model = _tiny()
        fit(model, x, y, config)
        plain.append(model[0].weight.detach().clone())
    assert torch.equal(plain[0], plain[1])  # without DP the seed decides everything
    assert not torch.equal(private[0], private[1])  # with it, the same seed and data: other noise
    assert set(dp.state_dict()) == {"accountant"}  # a checkpoint never holds what regenerates the noise


def test_an_empty_poisson_batch_still_takes_its_noise_step() -> None:
    model = _tiny()
    before = [p.detach().clone() for p in model.parameters()]
    dp = _dp(model, sample_rate=1e-9)  # the batch is all but surely empty
    fit(
        model,
        torch.randn(4, 6),
        torch.zeros(4, dtype=torch.long),
        FitConfig(epochs=1, batch_size=4),
        privacy=dp,
    )
    dp.detach()
    assert dp.accountant.history[0][2] == 1  # the accountant counted the step
    assert all(
        not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)
    )  # noise moved it
    report = dp.report()
    assert (report.unit, report.accountant, report.clipping_norm) == ("record", "rdp", 1.0)
    assert report.epsilon == dp.epsilon() > 0


def test_accounting_matches_the_closed_form_of_the_gaussian_mechanism() -> None:
    # Without subsampling (q = 1) each step is a Gaussian mechanism of sensitivity C and noise σ·C:
    # Rényi DP of order a is a/(2σ²) per step, T·a/(2σ²) after T steps (Mironov 2017). Opacus turns it
    # into (ε, δ) with ε = min_a [rdp(a) + log((a−1)/a) − (log δ + log a)/(a − 1)] (Balle et al. 2020)
    # over its grid of orders. For σ = 2, T = 20, δ = 1e-3: a = 2 gives 5 − 0.693 + 6.215 = 10.52, a = 2.5
    # gives 6.25 − 0.511 + 3.994 = 9.733, a = 3 gives 7.5 − 0.405 + 2.905 = 10.00; the minimum is at 2.5.
    sigma, steps, delta = 2.0, 20, 1e-3
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
    by_hand = np.min(
        steps * orders / (2 * sigma**2)
        + np.log((orders - 1) / orders)
        - (math.log(delta) + np.log(orders)) / (orders - 1)
    )
    assert by_hand == pytest.approx(9.733, abs=1e-3)
    spent = epsilon_for(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp")
    assert spent == pytest.approx(by_hand, rel=1e-9)
    looser = epsilon_for(noise_multiplier=0.8, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp")
    assert spent < looser  # more noise, less ε
    found = noise_multiplier_for(
        target_epsilon=5.0, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp"
    )
    assert (
        epsilon_for(noise_multiplier=found, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp")
        <= 5.0
    )


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 12),
    clipping_norm=st.sampled_from([0.01, 0.5, 3.0]),
    scale=st.sampled_from([0.1, 10.0, 1000.0]),
    seed=st.integers(0, 10_000),
)
def test_one_example_moves_the_clipped_gradient_sum_by_at_most_c(
    rows: int, clipping_norm: float, scale: float, seed: int
) -> None:
    """Sensitivity, the fact the Gaussian noise is calibrated to: adding one example to a batch changes
    the sum of clipped per-example gradients by at most C, however large its raw gradient."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 6, generator=generator) * scale
    y = torch.randint(0, 3, (rows,), generator=generator)

    def clipped_sum(count: int) -> torch.Tensor:
        model = _tiny()
        dp = _dp(model, clipping_norm=clipping_norm)
        # mean reduction, as in training: Opacus rescales it to per-example gradients
        torch.nn.functional.cross_entropy(dp.module(x[:count]), y[:count]).backward()
        dp.optimizer.clip_and_accumulate()
        summed = torch.cat([p.summed_grad.flatten() for p in model.parameters()])
        dp.detach()
        return summed

    with_all, without_last = clipped_sum(rows), clipped_sum(rows - 1)
    assert float(torch.linalg.vector_norm(with_all - without_last)) <= clipping_norm * (1 + 1e-4)
    assert float(torch.linalg.vector_norm(with_all)) <= rows * clipping_norm * (1 + 1e-4)
