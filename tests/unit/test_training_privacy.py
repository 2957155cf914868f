"""DP-SGD: the ε reported is Opacus's accountant's; models Opacus cannot handle are fixed or refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn

from skyline.errors import ConfigError
from skyline.training.config import TrainConfig
from skyline.training.models import build_model
from skyline.training.privacy import prepare_model
from skyline.training.trainer import train

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
