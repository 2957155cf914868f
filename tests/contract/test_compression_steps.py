"""Every registered recipe step keeps the same contract: its name, its input form, a runnable output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from skyline.compression.artifact import Artifact, OnnxArtifact, TorchArtifact
from skyline.compression.steps import STEPS, StepContext, build_step
from skyline.compression.subjects import training_data
from skyline.compression.task import Task, classification_task
from skyline.errors import ConfigError
from skyline.testing.compression import small_cnn
from skyline.training.export import export_onnx

pytestmark = pytest.mark.unit

ONNX_INPUT = {"optimize", "quantize"}  # every other step takes a PyTorch module
FAST: dict[str, dict[str, Any]] = {"prune": {"finetune_epochs": 1}, "distill": {"epochs": 1}}


@pytest.fixture(scope="module")
def task() -> Task:
    return classification_task("digits", training_data("digits"))


@pytest.fixture(scope="module")
def module() -> torch.nn.Module:
    torch.manual_seed(0)
    return small_cnn(width=4).eval()


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_contract(name: str, task: Task, module: torch.nn.Module, tmp_path: Path) -> None:
    step = build_step(name, dict(FAST.get(name, {})))
    assert step.name == name
    ctx = StepContext(task=task, work_dir=tmp_path, prefix=name)
    torch_form: Artifact = TorchArtifact(module)
    onnx_form: Artifact = OnnxArtifact(export_onnx(module, task.sample(2), tmp_path / "source.onnx"))
    right, wrong = (onnx_form, torch_form) if name in ONNX_INPUT else (torch_form, onnx_form)
    result = step.apply(right, ctx)
    assert isinstance(result, TorchArtifact | OnnxArtifact)
    assert result.predictor(task, threads=1)(task.sample(3)).shape == (3, 10)
    assert result.size_bytes() > 0 and result.params() > 0
    with pytest.raises(ConfigError, match=f"step '{name}' needs"):
        step.apply(wrong, ctx)


def test_unknown_steps_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown recipe step"):
        build_step("sparsify", {})
    with pytest.raises(ConfigError, match="step 'quantize'"):
        build_step("quantize", {"bits": 4})
    with pytest.raises(ConfigError, match="mode"):
        build_step("quantize", {"mode": "int4"})
