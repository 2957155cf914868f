"""`--launcher ray`: the same training inside Ray Train's TorchTrainer, on a private local Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skyline.training.config import TrainConfig
from skyline.training.trainer import train

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # ray.shutdown() leaves a helper subprocess to exit on its own; Python flags its Popen as unwaited.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def test_ray_train_runs_two_workers_and_matches_local_ddp(tmp_path: Path) -> None:
    config = TrainConfig(
        dataset="digits", model="linear", epochs=1, optimizer="sgd", lr=0.05, workers=2, launcher="ray",
        out_dir=tmp_path / "ray", export_onnx=False, plot=False,
    )  # fmt: skip
    result = train(config)
    assert result.workers == 2 and json.loads((tmp_path / "ray" / "metrics.json").read_text())["workers"] == 2
    local = train(config.replace(launcher="local", workers=1, out_dir=tmp_path / "one"))
    ray_weights = torch.load(tmp_path / "ray" / "model.pt", weights_only=False).state_dict()
    one_weights = torch.load(tmp_path / "one" / "model.pt", weights_only=False).state_dict()
    assert all(torch.allclose(one_weights[k], ray_weights[k], atol=1e-5) for k in one_weights)
    assert result.test_accuracy == pytest.approx(local.test_accuracy, abs=0.003)
