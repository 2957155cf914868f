"""Replicas started the way the control plane starts them: one `skyline train` per rank, joined by env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyline.core.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_env_launched_replicas_train_one_model(tmp_path: Path) -> None:
    port = str(free_port())
    out = tmp_path / "run"
    flags = ["--dataset", "digits", "--model", "linear", "--epochs", "1", "--out", str(out)]
    replicas = []
    for rank in (0, 1):
        env = os.environ | {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        summary = tmp_path / f"rank-{rank}.json"
        replicas.append(
            subprocess.Popen(
                [sys.executable, "-m", "skyline.cli.app", "train", *flags, "--json", str(summary)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [replica.communicate(timeout=240) for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait()
    assert [r.returncode for r in replicas] == [0, 0], outputs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["workers"] == 2
    # Rank 1 reports the same result, read back from what rank 0 wrote.
    assert (
        json.loads((tmp_path / "rank-1.json").read_text())
        == metrics
        == json.loads((tmp_path / "rank-0.json").read_text())
    )
