"""ONNX export parity, int8 fidelity bounds on small real models, the gate, and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skyline.compression.artifact import OnnxArtifact, TorchArtifact
from skyline.compression.measure import MeasureConfig, Measurement
from skyline.compression.ort_quantize import optimize_graph, quantize_int8
from skyline.compression.ort_session import OnnxPredictor
from skyline.compression.pipeline import compress
from skyline.compression.recipe import load_recipe
from skyline.compression.report import gate_failures
from skyline.compression.steps import ExportStep, StepContext
from skyline.compression.subjects import check_model_fits, load_model_file, training_data
from skyline.compression.task import Task, classification_task
from skyline.errors import ConfigError, DataError
from skyline.testing.compression import small_cnn
from skyline.training.export import export_onnx
from skyline.training.fit import FitConfig, fit

pytestmark = pytest.mark.unit


def _relative_rms(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.sqrt(np.mean((approx - exact) ** 2)) / np.sqrt(np.mean(exact**2)))


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Task]:
    """A narrow digits CNN trained for 3 epochs (a second or two): real data, a real accuracy."""
    data = training_data("digits")
    torch.manual_seed(0)
    model = small_cnn(width=8)
    fit(model, data.x_train, data.y_train, FitConfig(epochs=3, lr=3e-3))
    return model, classification_task("digits", data)


def _export(model: nn.Module, task: Task, path: Path) -> OnnxArtifact:
    return OnnxArtifact(export_onnx(model, task.sample(2), path))


def test_export_parity_outputs_and_accuracy(trained: tuple[nn.Module, Task], tmp_path: Path) -> None:
    model, task = trained
    ctx = StepContext(task=task, work_dir=tmp_path, prefix="m")
    exported = ExportStep().apply(TorchArtifact(model), ctx)
    assert isinstance(exported, OnnxArtifact)
    parity = ctx.notes["parity"]
    assert parity["max_abs_diff"] < 1e-4
    assert parity["metric_exported"] == parity["metric_source"] > 90.0
    # A batch size never seen at export time still runs: the batch axis is dynamic.
    assert OnnxPredictor(exported.path, threads=1)(task.sample(7)).shape == (7, 10)


def test_static_int8_stays_within_bounds_and_shrinks(trained: tuple[nn.Module, Task], tmp_path: Path) -> None:
    model, task = trained
    fp32 = optimize_graph(_export(model, task, tmp_path / "m.onnx"), task, tmp_path / "m.opt.onnx")
    int8 = quantize_int8(fp32, task, tmp_path / "m.int8.onnx", mode="static")
    reference, quantized = OnnxPredictor(fp32.path, threads=1), OnnxPredictor(int8.path, threads=1)
    batch = task.sample(256)
    ref_logits, q_logits = reference(batch), quantized(batch)
    assert np.mean(ref_logits.argmax(1) == q_logits.argmax(1)) >= 0.97
    assert _relative_rms(q_logits, ref_logits) < 0.1
    assert abs(task.evaluate(quantized) - task.evaluate(reference)) <= 2.0
    assert int8.size_bytes() < fp32.size_bytes() / 2  # tiny model: QDQ scales and graph overhead weigh in


def test_dynamic_int8_per_channel_keeps_an_mlp_close(tmp_path: Path) -> None:
    data = training_data("digits")
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    fit(mlp, data.x_train, data.y_train, FitConfig(epochs=3, lr=3e-3))
    task = classification_task("digits", data)
    fp32 = _export(mlp, task, tmp_path / "mlp.onnx")
    int8 = quantize_int8(fp32, task, tmp_path / "mlp.int8.onnx", mode="dynamic")
    batch = task.sample(256)
    ref, q = OnnxPredictor(fp32.path, threads=1)(batch), OnnxPredictor(int8.path, threads=1)(batch)
    assert np.mean(ref.argmax(1) == q.argmax(1)) >= 0.98
    assert _relative_rms(q, ref) < 0.1


def _measurement(metric: float, delta: float) -> Measurement:
    return Measurement(
        size_bytes=1,
        params=1,
        latency_p50_ms=1.0,
        latency_p99_ms=1.0,
        throughput_per_s=1.0,
        best_batch=1,
        metric=metric,
        metric_delta=delta,
    )


def test_gate_refuses_only_variants_that_lose_more_than_allowed() -> None:
    rows = {"fp32": _measurement(99.0, 0.0), "a": _measurement(98.5, -0.5), "b": _measurement(97.0, -2.0)}
    assert gate_failures(rows, 1.0) == {"b": 2.0}
    assert gate_failures(rows, 0.5) == {"b": 2.0}  # exactly the allowance passes
    assert gate_failures(rows, 0.4) == {"a": 0.5, "b": 2.0}


def test_compress_writes_the_report_and_the_gate_removes_refused_files(
    trained: tuple[nn.Module, Task], tmp_path: Path
) -> None:
    model, task = trained
    wreck = tmp_path / "wreck.yaml"  # 90 % of the channels gone and no fine-tuning: accuracy collapses
    wreck.write_text("steps:\n  - prune: {amount: 0.9, finetune_epochs: 0}\n")
    recipes = [load_recipe("int8"), load_recipe(str(wreck))]
    measure = MeasureConfig(latency_runs=10, rounds=2, batch_sizes=(1, 16), throughput_runs=2)
    report = compress(
        model, task, recipes, tmp_path / "out", model_name="tiny", measure=measure, max_metric_drop=5.0
    )
    payload = report.as_json()
    assert set(payload) == {"model", "threads", "variants"}
    assert set(payload["variants"]) == {"fp32", "int8", "wreck"}
    assert set(payload["variants"]["int8"]) == {
        "size_bytes", "params", "latency_p50_ms", "latency_p99_ms", "throughput_per_s", "metric", "metric_delta",
    }  # fmt: skip
    assert payload["variants"]["fp32"]["metric_delta"] == 0.0
    assert (tmp_path / "out" / "report.json").is_file()
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert set(gate_failures(report.measurements, 5.0)) == {"wreck"}
    assert (tmp_path / "out" / "variants" / "int8.onnx").is_file()
    assert not (tmp_path / "out" / "variants" / "wreck.pt").exists()


def test_corrupted_and_wrong_shape_models_give_clear_errors(
    trained: tuple[nn.Module, Task], tmp_path: Path
) -> None:
    _, task = trained
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(DataError, match=r"cannot read model file .*model\.pt"):
        load_model_file(garbage)
    state = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state)
    with pytest.raises(DataError, match="not a PyTorch module"):
        load_model_file(state)
    with pytest.raises(ConfigError, match=r"does not accept digits inputs \(input \(2, 1, 8, 8\)\)"):
        check_model_fits(small_cnn(in_channels=3, side=32), task, source="rgb.pt")
    with pytest.raises(ConfigError, match="outputs shape"):
        check_model_fits(small_cnn(num_classes=4), task, source="four.pt")
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot load ONNX model"):
        OnnxArtifact(bad_onnx).predictor(task, threads=1)
    assert TorchArtifact(small_cnn()).params() == sum(p.numel() for p in small_cnn().parameters())


def test_bf16_halves_the_file_and_keeps_the_answers(trained: tuple[nn.Module, Task]) -> None:
    from skyline.compression.torch_quantize import to_half

    model, task = trained
    fp32, bf16 = TorchArtifact(model), to_half(TorchArtifact(model), dtype="bf16")
    batch = task.sample(256)
    agree = np.mean(
        fp32.predictor(task, threads=1)(batch).argmax(1) == bf16.predictor(task, threads=1)(batch).argmax(1)
    )
    assert agree >= 0.98
    assert bf16.size_bytes() < 0.6 * fp32.size_bytes()


@pytest.mark.gpu
def test_fp16_runs_on_the_gpu(trained: tuple[nn.Module, Task]) -> None:
    from skyline.compression.torch_quantize import to_half

    model, task = trained
    fp16 = to_half(TorchArtifact(model), dtype="fp16")
    batch = task.sample(64)
    reference = TorchArtifact(model).predictor(task, threads=1)(batch)
    assert np.mean(fp16.predictor(task, threads=1)(batch).argmax(1) == reference.argmax(1)) >= 0.98
