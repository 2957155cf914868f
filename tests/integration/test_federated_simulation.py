"""One small federated run in Flower's simulation engine (Ray): 3 clients × 2 rounds, FedProx + DP.

It runs `skyline fl run` in a subprocess: Ray's node processes and files then live and die with that
process, and the JSON contract is checked on the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_three_clients_two_rounds_learn_and_report_epsilon(tmp_path: Path) -> None:
    out = tmp_path / "fl.json"
    args = ["fl", "run", "--clients", "3", "--rounds", "2", "--alpha", "0.5", "--strategy", "fedprox"]
    done = subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args, "--dp-epsilon", "1000", "--json", str(out)],
        capture_output=True, text=True, timeout=500, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result) == {
        "rounds",
        "final_accuracy",
        "centralized_accuracy",
        "accuracy_per_round",
        "epsilon",
    }
    assert result["rounds"] == 2 and len(result["accuracy_per_round"]) == 2
    assert result["final_accuracy"] > 0.3  # from 0.1 (chance) after two rounds, even with the DP noise
    assert 0 < result["epsilon"] <= 1000.0
    assert result["centralized_accuracy"] > 0.8


def test_secure_aggregation_round_learns() -> None:
    args = ["fl", "run", "--clients", "3", "--rounds", "1", "--secagg"]
    done = subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args],
        capture_output=True, text=True, timeout=500, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Secure aggregation commencing" in output  # Flower's SecAgg+ workflow ran the fit stage
    final = float(output.split("final accuracy: ")[1].split()[0])
    assert final > 0.5  # one masked round takes the model from chance (0.1) to most digits right
