"""The fleet as a user runs it, every part a real process on 127.0.0.1: `skyline edge cloud` with a Flower
SuperLink, two `skyline edge run --fl` agents each holding its own data folder, `skyline fl start` running
federated rounds on them and publishing the aggregated model as a signed new version, `skyline edge fleet`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from skyline.core.net import free_port
from skyline.federated.data_folder import write_rows
from skyline.federated.partition import dirichlet_partition
from skyline.security.rbac import Role
from skyline.security.signing import verify_directory
from skyline.security.tokens import TokenAuthority
from skyline.testing.edge import digits, trained_digits

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _skyline(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyline.cli.app", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs,
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> bytes:
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1]


def _wait_for(url: str, headers: dict[str, str], ready: Any, timeout_s: float = 120.0) -> Any:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, headers=headers, timeout=5).json()
            if ready(last):
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never became ready; last answer {last}")


def test_agents_train_federated_rounds_on_their_own_data(tmp_path: Path) -> None:
    from skyline.edge.publish import publish_model
    from skyline.security.signing import generate_signing_keys

    private, public = generate_signing_keys(tmp_path / "signing.key", tmp_path / "signing.pub")
    splits = digits()
    publish_model(
        trained_digits("mlp", epochs=1), splits.input_shape, root=tmp_path / "repo", name="digits", version=1,
        private_key=private, architecture="mlp",
    )  # fmt: skip
    parts = dirichlet_partition(splits.train.y.numpy(), clients=2, alpha=1.0, seed=0)
    for i, rows in enumerate(parts):
        write_rows(tmp_path / f"data-{i}", splits.train.x.numpy()[rows], splits.train.y.numpy()[rows])
    write_rows(tmp_path / "eval", splits.test.x.numpy(), splits.test.y.numpy())
    tokens = TokenAuthority(tmp_path / "tokens.json")
    admin = tokens.bootstrap_admin() or ""
    port, link = free_port(), free_port()
    cloud = _skyline(
        "edge", "cloud", "--port", str(port), "--repository", str(tmp_path / "repo"), "--public-key", str(public),
        "--tokens", str(tmp_path / "tokens.json"), "--ingest", str(tmp_path / "ingest.db"),
        "--superlink-port", str(link),
    )  # fmt: skip
    agents: list[subprocess.Popen[bytes]] = []
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", {}, lambda h: h.get("status") == "ok")
        for i in range(2):
            agents.append(_skyline(
                "edge", "run", "--cloud", f"http://127.0.0.1:{port}", "--model", "digits",
                "--token", tokens.issue(f"agent-{i}", Role.EDGE),  # one token per agent, named as it is
                "--public-key", str(public), "--name", f"agent-{i}", "--label", f"site=s{i}",
                "--store", str(tmp_path / f"agent-{i}"), "--data", str(tmp_path / f"data-{i}"),
                "--fl", "--superlink", f"127.0.0.1:{link}", "--poll-s", "0.5", "--telemetry-s", "0.5",
            ))  # fmt: skip
        viewer = {"authorization": f"Bearer {admin}"}
        _wait_for(
            f"http://127.0.0.1:{port}/v1/fleet", viewer,
            lambda f: len(f) == 2 and all(a["models"].get("digits", {}).get("version") == 1 for a in f),
        )  # fmt: skip
        started = subprocess.run(
            [sys.executable, "-m", "skyline.cli.app", "fl", "start", "--model", "digits", "--repo",
             str(tmp_path / "repo"), "--superlink", f"127.0.0.1:{link}", "--sign-key", str(private),
             "--eval-data", str(tmp_path / "eval"), "--agents", "2", "--rounds", "2", "--lr", "0.05",
             "--workdir", str(tmp_path / "fl"), "--json", str(tmp_path / "fl.json")],
            capture_output=True, text=True, timeout=400, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-2000:]
        result = json.loads((tmp_path / "fl.json").read_text())
        assert result["published_version"] == 2 and result["previous_version"] == 1
        assert len(result["accuracy_per_round"]) == 2 and result["accuracy"] > 0.8
        verify_directory(tmp_path / "repo" / "digits" / "2", public)  # signed like every model
        listed = subprocess.run(
            [sys.executable, "-m", "skyline.cli.app", "edge", "fleet", "--cloud", f"http://127.0.0.1:{port}",
             "--token", admin, "--json", str(tmp_path / "fleet.json")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        fleet = json.loads((tmp_path / "fleet.json").read_text())["agents"]
        # The new version waits for a rollout: every agent still runs (and should run) version 1.
        assert {(a["agent"], a["health"], a["models"]["digits"]["desired"]) for a in fleet} == {
            ("agent-0", "ok", 1),
            ("agent-1", "ok", 1),
        }
        assert all(a["labels"] for a in fleet) and all(a["uplink_backlog"] is not None for a in fleet)
    finally:
        errors = [_stop(a) for a in agents]
        cloud_error = _stop(cloud)
    assert all(a.returncode == 0 for a in agents), errors
    assert cloud.returncode == 0, cloud_error[-2000:]
    assert np.isfinite(result["round_seconds"])
