"""`skyline train` as a user runs it: a subprocess, 2 DDP workers, real files, the exact metrics.json keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skyline.training.config import TrainConfig
from skyline.training.trainer import train

pytestmark = pytest.mark.e2e

KEYS = ["test_accuracy", "val_accuracy", "epochs", "workers", "train_time_s", "samples_per_s", "params", "sparsity", "epsilon"]  # fmt: skip


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300
    )


def test_two_worker_training_writes_the_artifacts_and_matches_one_worker(tmp_path: Path) -> None:
    out, summary = tmp_path / "run", tmp_path / "summary.json"
    flags = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--optimizer", "sgd", "--lr", "0.05"]
    result = skyline(
        "train", *flags, "--workers", "2", "--seed", "1", "--out", str(out), "--json", str(summary)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --json: quiet
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == KEYS and json.loads(summary.read_text()) == metrics
    assert metrics["workers"] == 2 and metrics["epochs"] == 2 and metrics["epsilon"] is None
    for name in ("model.pt", "model.onnx", "curves.png", "log.jsonl", "result.json"):
        assert (out / name).is_file(), name
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    one = train(
        TrainConfig(
            dataset="digits",
            model="mlp",
            epochs=2,
            optimizer="sgd",
            lr=0.05,
            seed=1,
            out_dir=tmp_path / "one",
            export_onnx=False,
            plot=False,
        )
    )
    two_weights = torch.load(out / "model.pt", weights_only=False).state_dict()
    one_weights = torch.load(tmp_path / "one" / "model.pt", weights_only=False).state_dict()
    assert all(torch.allclose(one_weights[k], two_weights[k], atol=1e-5) for k in one_weights)
    assert metrics["test_accuracy"] == pytest.approx(one.test_accuracy, abs=0.003)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "imagenet"), "unknown dataset 'imagenet'"),
        (("--epochs", "0"), "epochs must be >= 1"),
        (("--workers", "3", "--batch-size", "64"), "divisible by workers 3"),
        (("--prune", "0.5", "--prune-kind", "diagonal"), "prune_kind must be one of"),
        (("--dp-epsilon", "3", "--workers", "2"), "one process"),
        (("--resume",), "nothing to resume"),
    ],
)
def test_bad_options_fail_with_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = skyline("train", "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
