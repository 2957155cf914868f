"""Real Flower simulations (Ray) on the smallest configurations that still prove each path:
FedProx + client-level DP on 2 clients × 2 rounds, and SecAgg+ on its minimum of 3 clients × 1 round.

Each runs `skyline fl run --json` in a subprocess (Ray's node processes and files then live and die with
that process, and the JSON contract is checked on the way) with ``--cpus 1``: one client actor, the
cheapest Ray start. Ray cannot be shared between the two runs: Flower shuts it down after each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTRACT = {"rounds", "final_accuracy", "centralized_accuracy", "accuracy_per_round", "epsilon"}


def _fl_run(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", "fl", "run", "--cpus", "1", *args, "--json", str(out)],
        capture_output=True, text=True, timeout=500, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""  # --json: quiet stdout
    result: dict[str, Any] = json.loads(out.read_text())
    assert set(result) == CONTRACT
    return result


def test_fedprox_with_dp_learns_and_reports_epsilon(tmp_path: Path) -> None:
    args = (
        "--clients",
        "2",
        "--rounds",
        "2",
        "--alpha",
        "0.5",
        "--strategy",
        "fedprox",
        "--dp-epsilon",
        "1000",
    )
    result = _fl_run(tmp_path / "fl.json", *args)
    assert result["rounds"] == 2 and len(result["accuracy_per_round"]) == 2
    assert result["final_accuracy"] > 0.3  # from 0.1 (chance) after two rounds, even with the DP noise
    assert 0 < result["epsilon"] <= 1000.0
    assert result["centralized_accuracy"] > 0.8


def test_secure_aggregation_round_learns() -> None:
    # Without --json: Flower's log then shows that its SecAgg+ workflow really ran the fit stage.
    args = ["fl", "run", "--cpus", "1", "--clients", "3", "--rounds", "1", "--secagg"]
    done = subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args],
        capture_output=True, text=True, timeout=500, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Secure aggregation commencing" in output and "Secure aggregation completed" in output
    final = float(output.split("final accuracy: ")[1].split()[0])
    # One masked round takes the model from chance (0.1) to most digits right: the masks cancelled in the
    # sum (a wrong unmasking would leave noise-like weights at chance level).
    assert final > 0.5
