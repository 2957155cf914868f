"""The CLI as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def skyline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_help_lists_the_working_groups_and_version_prints() -> None:
    result = skyline("--help")
    assert result.returncode == 0
    assert "example" in result.stdout and "demo" in result.stdout
    version = skyline("--version")
    assert version.returncode == 0 and version.stdout.startswith("skyline ")


def test_linreg_writes_the_documented_json_and_a_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "out.json", tmp_path / "fit.png"
    result = skyline("example", "linreg", "--json", str(out), "--plot", str(png))
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    assert set(payload) == {"w", "b", "loss", "predictions"}
    assert payload["w"] == pytest.approx(1.971546, abs=1e-6)
    assert len(payload["predictions"]) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "w = 1.971546" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("example", "linreg", "--lr", "abc"),
        ("example", "linreg", "--x", "1,2"),
        ("example", "linreg", "--x", "a,b,c"),
        ("example", "linreg", "--lr", "50"),
        ("no-such-command",),
        ("demo", "--only", "no-such-step"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: tuple[str, ...]) -> None:
    result = skyline(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_demo_writes_a_report(tmp_path: Path) -> None:
    result = skyline("demo", "--quick", "--only", "linreg", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["steps"]["linreg"]["ok"] is True
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "linreg/linreg.png" in report
