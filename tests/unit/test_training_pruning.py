"""Pruning during training: the cubic schedule, exact ratios, monotone masks, physical removal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from skyline.training.config import TrainConfig
from skyline.training.models import build_model, count_parameters
from skyline.training.pruning import ChannelPruner, GlobalMagnitudePruner, cubic_sparsity, dense_weight_count
from skyline.training.trainer import train

pytestmark = pytest.mark.unit


def test_the_cubic_schedule_by_hand() -> None:
    ramp = {"start_step": 10, "end_step": 20, "final": 0.8}
    assert cubic_sparsity(0, **ramp) == 0.0 and cubic_sparsity(10, **ramp) == 0.0
    assert cubic_sparsity(15, **ramp) == pytest.approx(0.8 * (1 - 0.5**3))  # 0.7: fast early
    assert cubic_sparsity(18, **ramp) == pytest.approx(0.8 * (1 - 0.2**3))
    assert cubic_sparsity(20, **ramp) == 0.8 == cubic_sparsity(99, **ramp)


def test_global_magnitude_prunes_exactly_the_ratio_and_never_unprunes() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    pruner = GlobalMagnitudePruner(model)
    total = dense_weight_count(model)
    pruner.update(model, 0.3)
    first = {name: mask.clone() for name, mask in pruner.masks.items()}
    assert sum(
        int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)
    ) == round(0.3 * total)
    with torch.no_grad():  # training moves weights; pruned ones must stay pruned at the next update
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    pruner.apply(model)
    pruner.update(model, 0.5)
    assert pruner.sparsity(model) == pytest.approx(round(0.5 * total) / total)
    assert all(not (pruner.masks[name] & ~mask).any() for name, mask in first.items())


@pytest.mark.parametrize("model_name", ["cnn", "cnn-bn", "mlp"])
def test_structured_pruning_removes_half_the_units_and_computes_the_same(model_name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, (1, 8, 8), 10).eval()
    pruner = ChannelPruner(model)
    pruner.update(model, 0.5)
    inputs = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        masked = model(inputs)
        small = pruner.finalize(model).eval()
        assert torch.allclose(small(inputs), masked, atol=1e-5)
    widths = [
        m.out_features if isinstance(m, nn.Linear) else m.out_channels
        for m in small.modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    expected = {"cnn": [16, 32, 64, 10], "cnn-bn": [16, 32, 64, 10], "mlp": [64, 32, 10]}[model_name]
    assert widths == expected
    if model_name == "cnn":
        flatten_input = next(m for m in small.modules() if isinstance(m, nn.Linear))
        assert flatten_input.in_features == 32 * 4 * 4  # 32 of 64 channels × 4×4 positions survive
    assert 1 - dense_weight_count(small) / dense_weight_count(model) == pytest.approx(pruner.sparsity(model))


def test_training_with_structured_pruning_saves_a_smaller_model(tmp_path: Path) -> None:
    config = TrainConfig(
        dataset="digits", model="mlp", epochs=3, batch_size=32, lr=5e-3, prune=0.5, prune_kind="structured",
        prune_start_epoch=0, prune_end_epoch=2, patience=0, out_dir=tmp_path, export_onnx=False, plot=False,
    )  # fmt: skip
    result = train(config)
    dense = count_parameters(build_model("mlp", (1, 8, 8), 10))
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    assert count_parameters(saved) == result.params == (64 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    assert result.params < dense / 2
    assert [h.sparsity for h in result.history][-1] == pytest.approx(result.sparsity)
    assert result.test_accuracy is not None and result.test_accuracy > 0.8
