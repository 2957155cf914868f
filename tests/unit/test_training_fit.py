"""The one training loop: a step equals the hand-computed update, hooks run in their place, seeds decide
the shuffling; the one exporter: parity holds, and a file that would differ is never left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skyline.errors import ConfigError, IntegrityError
from skyline.serving.runtime import OnnxRuntime
from skyline.training.export import check_parity, export_checked, export_onnx
from skyline.training.fit import FitConfig, Step, StepHooks, cross_entropy, fit
from skyline.training.privacy import DPSGD

pytestmark = pytest.mark.unit


def _data(rows: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, 4, generator=torch.Generator().manual_seed(3)), torch.arange(rows) % 3


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_a_full_batch_step_is_the_gradient_descent_update_by_hand() -> None:
    x, y = _data()
    model, reference = _model(), _model()
    cross_entropy(reference, x, y).backward()  # type: ignore[no-untyped-call]
    expected = [p.detach() - 0.1 * p.grad for p in reference.parameters()]  # type: ignore[operator]
    # one step on the whole batch; SGD's momentum buffer starts as the gradient itself
    fit(model, x, y, FitConfig(epochs=1, batch_size=len(y), lr=0.1, optimizer="sgd"))
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want)
    assert not model.training  # fit leaves the model ready for evaluation


def test_hooks_run_in_their_place_on_every_step() -> None:
    x, y = _data(10)
    model = _model()
    seen: list[str] = []
    steps: list[Step] = []
    weight = model[0].weight

    def before_update() -> None:
        seen.append("before")
        assert weight.grad is not None and torch.equal(weight.detach(), snapshot[-1])

    def after_update() -> None:
        seen.append("after")
        assert not torch.equal(weight.detach(), snapshot[-1])
        snapshot.append(weight.detach().clone())

    snapshot = [weight.detach().clone()]
    hooks = StepHooks(before_update=before_update, after_update=after_update, after_step=steps.append)
    loss = fit(model, x, y, FitConfig(epochs=2, batch_size=4, lr=0.1), hooks=hooks)
    assert seen == ["before", "after"] * 6  # ⌈10/4⌉ = 3 steps an epoch, the last one short
    assert [(s.index, s.rows) for s in steps] == [(0, 4), (1, 4), (2, 2)] * 2
    assert loss == pytest.approx(sum(s.loss for s in steps[3:]) / 3)  # the last epoch's mean
    dp = DPSGD(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        sample_rate=0.5,
        expected_batch_size=5,
        delta=1e-5,
    )
    with pytest.raises(ConfigError, match="belongs to the DPSGD"):
        fit(model, x, y, FitConfig(epochs=1), hooks=hooks, privacy=dp)
    dp.detach()


def test_the_seed_decides_the_shuffling() -> None:
    x, y = _data(40)
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        fit(model, x, y, FitConfig(epochs=2, batch_size=8, seed=seed))
        runs.append(model[0].weight.detach().clone())
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_export_round_trips_with_a_dynamic_batch(tmp_path: Path) -> None:
    model, batch = _model().eval(), _data(6)[0].numpy()
    diff = export_checked(model, {"input": batch}, tmp_path / "m.onnx")
    assert diff < 1e-5
    runtime = OnnxRuntime(tmp_path / "m.onnx", intra_op_threads=1)
    seven = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(seven)).numpy()
    np.testing.assert_allclose(runtime.infer({"input": seven})["output"], expected, rtol=1e-5, atol=1e-5)


def test_an_export_that_differs_from_the_model_is_refused_and_removed(tmp_path: Path) -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if float(x.sum()) > 0 else x * 3  # tracing freezes the branch it saw

    path = export_onnx(Branchy(), {"input": np.ones((2, 3), np.float32)}, tmp_path / "b.onnx")
    assert check_parity(Branchy(), path, {"input": np.ones((2, 3), np.float32)}) == 0.0
    with pytest.raises(IntegrityError, match="differs from the PyTorch model by 1"):
        check_parity(Branchy(), path, {"input": -np.ones((2, 3), np.float32)})

    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand_like(x)  # its own noise in each runtime: never the same outputs

    with pytest.raises(IntegrityError):
        export_checked(Noisy(), {"input": np.ones((64, 3), np.float32)}, tmp_path / "n.onnx")
    assert not (tmp_path / "n.onnx").exists()


def test_a_model_the_exporter_cannot_trace_is_a_config_error_and_leaves_no_file(tmp_path: Path) -> None:
    class Unsupported(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.kthvalue(x, 1)[0]  # no ONNX operator at opset 17

    with pytest.raises(ConfigError, match="cannot export Unsupported to ONNX"):
        export_onnx(Unsupported(), {"input": np.ones((3, 3), np.float32)}, tmp_path / "u.onnx")
    assert not (tmp_path / "u.onnx").exists()
