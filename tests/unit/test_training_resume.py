"""Checkpoints and --resume: a resumed run ends exactly where the uninterrupted one does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from skyline.errors import ConfigError, NotFoundError
from skyline.training.checkpoint import list_checkpoints
from skyline.training.config import TrainConfig
from skyline.training.trainer import train

pytestmark = pytest.mark.unit


def _config(out: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        dataset="digits", model="mlp", epochs=2, batch_size=64, optimizer="adam", lr=3e-3, patience=0,
        checkpoint_every_steps=5, keep_checkpoints=100, out_dir=out, export_onnx=False, plot=False,
    )  # fmt: skip
    return base.replace(**changes)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    model = torch.load(out / "model.pt", weights_only=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("checkpoint_step", [10, 25])  # mid first epoch; mid second (18 steps an epoch)
def test_resuming_from_a_mid_epoch_checkpoint_continues_exactly(tmp_path: Path, checkpoint_step: int) -> None:
    full = train(_config(tmp_path / "full"))
    steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "full")]
    assert steps == [5, 10, 15, 20, 25, 30, 35]
    resumed_dir = tmp_path / "resumed" / "checkpoints"
    resumed_dir.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / f"step-{checkpoint_step:08d}.pt", resumed_dir)
    resumed = train(_config(tmp_path / "resumed", resume=True))
    expected, actual = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert [h.val_loss for h in resumed.history] == [h.val_loss for h in full.history]
    assert resumed.test_accuracy == full.test_accuracy


def test_resume_needs_a_checkpoint_and_the_same_options(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nothing to resume"):
        train(_config(tmp_path, resume=True))
    train(_config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="different epochs"):
        train(_config(tmp_path, resume=True))
    assert len(list_checkpoints(tmp_path)) == 3  # 18 steps, every 5: 5, 10, 15


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    train(_config(tmp_path, epochs=1, keep_checkpoints=2))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000010.pt", "step-00000015.pt"]
