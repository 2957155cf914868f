"""`skyline compress` as a user runs it: the gate exits 2 with numbers, bad files give one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skyline.cli.app import main
from skyline.compression.subjects import training_data
from skyline.compression.task import classification_task
from skyline.testing.compression import small_cnn
from skyline.training.export import export_onnx
from skyline.training.fit import FitConfig, fit

pytestmark = pytest.mark.e2e


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300
    )


def test_gate_refuses_a_variant_that_loses_too_much(tmp_path: Path) -> None:
    # A model file as `skyline train` writes it: a whole module, trained on the same digits split.
    from skyline.compression.subjects import training_data

    torch.manual_seed(0)
    model, data = small_cnn(width=8), training_data("digits")
    fit(model, data.x_train, data.y_train, FitConfig(epochs=3, lr=3e-3))
    torch.save(model, tmp_path / "model.pt")
    wreck = tmp_path / "wreck.yaml"  # 90 % of the channels removed, no fine-tuning
    wreck.write_text("name: wreck\nsteps:\n  - prune: {amount: 0.9, finetune_epochs: 0}\n")
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    result = skyline(
        "compress", str(tmp_path / "model.pt"), "--dataset", "digits", "--recipe", str(wreck), "--out", str(out), "--quick",
        "--max-metric-drop", "1", "--json", str(summary),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: 1 variant(s) lose more than --max-metric-drop 1.0")
    assert "wreck: " in result.stderr and "→" in result.stderr and "Traceback" not in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(summary.read_text())
    assert report["variants"]["wreck"]["metric_delta"] < -1.0
    assert result.stdout == ""  # --json keeps stdout quiet


def test_corrupted_model_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    result = skyline("compress", str(bad), "--recipe", "int8", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read model file") and "Traceback" not in result.stderr


def _main_exit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in-process (same entry point as the console script), for checks that fail before any work."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0), capsys.readouterr().err


def test_unknown_recipe_and_oversubscription_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main_exit(capsys, "compress", "digits-cnn", "--recipe", "int9", "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: unknown recipe 'int9'")
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8), dtype=np.float32))
    code, err = _main_exit(
        capsys, "compress", "infer", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "x.npy"),
        "--procs", "64", "--threads", "64",
    )  # fmt: skip
    assert code == 2 and "exceeds the" in err


def test_infer_shards_the_input_over_processes(tmp_path: Path) -> None:
    data = training_data("digits")
    torch.manual_seed(0)
    model_path = export_onnx(
        small_cnn(width=4), classification_task("digits", data).sample(2), tmp_path / "m.onnx"
    )
    inputs = tmp_path / "x.npy"
    np.save(inputs, data.x_test.numpy()[:100])
    summary, outputs = tmp_path / "infer.json", tmp_path / "y.npy"
    result = skyline(
        "compress", "infer", str(model_path), "--input", str(inputs), "--procs", "2", "--threads", "1",
        "--batch", "16", "--output", str(outputs), "--json", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(summary.read_text())
    assert payload["samples"] == 100 and payload["procs"] == 2 and payload["threads"] == 1
    assert payload["throughput_per_s"] > 0
    assert np.load(outputs).shape == (100, 10)
