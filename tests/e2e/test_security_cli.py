"""`skyline keys` as a user runs it: a real subprocess signs, then refuses a tampered model with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300
    )


def test_sign_then_a_tampered_model_exits_2_with_one_line_naming_the_file(tmp_path: Path) -> None:
    keys, model = tmp_path / "keys", tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"\x08\x07" * 512)
    assert skyline("keys", "gen", "--out", str(keys)).returncode == 0
    signed = skyline("keys", "sign", str(model), "--key", str(keys / "signing.key"), "--version", "1")
    assert signed.returncode == 0, signed.stderr
    (model / "model.onnx").write_bytes(b"\x08\x07" * 511 + b"\x08\x06")
    refused = skyline("keys", "verify", str(model), "--pub", str(keys / "signing.pub"))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert "'model.onnx' was modified" in refused.stderr and "Traceback" not in refused.stderr
