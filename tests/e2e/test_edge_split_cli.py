"""`skyline edge cloud` and `skyline edge run --strategy split` as two real processes on 127.0.0.1, both
loading the same signed, splittable version of a model trained here (`skyline serve pack --split`)."""

from __future__ import annotations

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

from skyline.cli.app import main
from skyline.core.net import free_port
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.e2e


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyline.cli.app", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _wait_for(url: str, headers: dict[str, str], ready: Any, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline, last = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, headers=headers, timeout=5).json()
            if ready(last):
                return dict(last)
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready; last answer {last}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def _pack(tmp_path: Path) -> tuple[Path, Path]:
    """A trained digits MLP exported to ONNX, packed splittable and signed with the CLI."""
    import torch

    from skyline.security.signing import generate_signing_keys
    from skyline.testing.edge import trained_digits
    from skyline.training.export import export_onnx

    private, public = generate_signing_keys(tmp_path / "signing.key", tmp_path / "signing.pub")
    model = torch.nn.Sequential(trained_digits("mlp", epochs=1), torch.nn.Softmax(dim=1))
    export_onnx(model, {"input": np.zeros((1, 1, 8, 8), dtype=np.float32)}, tmp_path / "digits.onnx")
    with pytest.raises(SystemExit) as done:
        main([
            "serve", "pack", str(tmp_path / "digits.onnx"), "--name", "digits", "--version", "1",
            "--repo", str(tmp_path / "repo"), "--split", "--sign-key", str(private),
        ])  # fmt: skip
    assert done.value.code == 0
    return tmp_path / "repo", public


@pytest.mark.slow
def test_agent_splits_with_the_cloud_process(tmp_path: Path) -> None:
    from skyline.edge.local_model import LocalModel
    from skyline.testing.edge import digits

    repo, public = _pack(tmp_path)
    assert (repo / "digits" / "1" / "split" / "split.json").is_file()
    cloud_tokens = TokenAuthority(tmp_path / "cloud-tokens.json")
    cloud_tokens.bootstrap_admin()
    edge_token = cloud_tokens.issue("edge-1", Role.EDGE)
    local_tokens = TokenAuthority(tmp_path / "local-tokens.json")
    local_tokens.bootstrap_admin()
    invoker = {"authorization": f"Bearer {local_tokens.issue('app', Role.INVOKER)}"}
    viewer = {"authorization": f"Bearer {local_tokens.issue('ops', Role.VIEWER)}"}
    cloud_port, agent_port = free_port(), free_port()
    cloud = _start(
        "edge", "cloud", "--port", str(cloud_port), "--tokens", str(tmp_path / "cloud-tokens.json"),
        "--ingest", str(tmp_path / "ingest.db"), "--repository", str(repo), "--public-key", str(public),
    )  # fmt: skip
    agent = None
    try:
        _wait_for(f"http://127.0.0.1:{cloud_port}/health", {}, lambda h: h.get("status") == "ok")
        agent = _start(
            "edge", "run", "--cloud", f"http://127.0.0.1:{cloud_port}", "--token", edge_token, "--name", "edge-1",
            "--model", "digits", "--strategy", "split", "--public-key", str(public),
            "--store", str(tmp_path / "edge"), "--port", str(agent_port), "--probe-s", "1", "--poll-s", "0.5",
            "--tokens", str(tmp_path / "local-tokens.json"), "--duration-s", "120",
        )  # fmt: skip
        status = _wait_for(
            f"http://127.0.0.1:{agent_port}/v1/status", viewer, lambda s: s.get("split_link") == "up"
        )
        assert status["strategy"] == "split" and status["split_bandwidth_mbps"] > 0
        x = digits().test.x.numpy()[:5]
        body = {
            "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        answer = httpx.post(
            f"http://127.0.0.1:{agent_port}/v2/models/digits/infer", json=body, headers=invoker, timeout=30
        ).json()
        probs = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(5, 10)
        expected = LocalModel(repo / "digits" / "1", 1).predict(x)
        np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
        assert set(answer["parameters"]["sources"]) <= {"edge", "split", "cloud"}
    finally:
        if agent is not None:
            _stop(agent)
        _stop(cloud)
    assert agent is not None and agent.returncode == 0


def test_every_strategy_needs_the_public_key(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["edge", "run", "--cloud", "http://127.0.0.1:1", "--token", "t", "--model", "digits"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--strategy", "split"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--public-key" in err and err.count("\n") == 1


def test_fl_needs_the_superlink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.pub"
    key.write_text("not checked before the flags")
    args = [
        "edge",
        "run",
        "--cloud",
        "http://127.0.0.1:1",
        "--token",
        "t",
        "--model",
        "d",
        "--public-key",
        str(key),
    ]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--fl"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fl and --superlink") and err.count("\n") == 1
