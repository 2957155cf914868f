"""`skyline edge eval` and `skyline fl run` as a user runs them: JSON contracts and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyline.cli.app import main

pytestmark = pytest.mark.e2e


def _skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args],
        capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_split_eval_writes_the_contract(tmp_path: Path) -> None:
    from skyline.edge.publish import publish_model
    from skyline.security.signing import generate_signing_keys
    from skyline.testing.edge import digits, trained_digits

    private, public = generate_signing_keys(tmp_path / "k.key", tmp_path / "k.pub")
    model = trained_digits("mlp", epochs=1)
    publish_model(
        model, (1, 8, 8), root=tmp_path / "repo", name="digits", version=1, private_key=private, split=True
    )
    out = tmp_path / "split.json"
    done = _skyline(
        "edge", "eval", "--strategy", "split", "--repo", str(tmp_path / "repo"), "--model", "digits",
        "--public-key", str(public), "--bandwidth-mbps", "100", "--rtt-ms", "5", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    result = json.loads(out.read_text())
    assert set(result) == {
        "chosen_partition", "best_partition_bruteforce", "latency_ms", "edge_only_ms", "cloud_only_ms",
        "emulated_edge_slowdown",
    }  # fmt: skip
    assert 0 <= result["chosen_partition"] <= 8 and result["latency_ms"] > 0
    assert result["emulated_edge_slowdown"] == 10.0 and digits().input_shape == (1, 8, 8)


@pytest.mark.slow
def test_cascade_eval_writes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "cascade.json"
    args = (
        "edge",
        "eval",
        "--strategy",
        "cascade",
        "--dataset",
        "digits",
        "--target-offload",
        "0.2",
        "--epochs",
        "2",
        "--rtt-ms",
        "1",
    )
    done = _skyline(*args, "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result) == {
        "edge_accuracy",
        "cloud_accuracy",
        "cascade_accuracy",
        "offload_fraction",
        "latency_p50_ms",
    }
    assert (
        0 <= result["offload_fraction"] <= 0.35
    )  # calibrated for 0.2 on validation; the test split may differ
    assert result["cascade_accuracy"] >= result["edge_accuracy"] - 0.02


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("edge", "eval", "--strategy", "mystery"), "--strategy must be one of cascade, split"),
        (("edge", "eval", "--strategy", "split"), "needs --repo, --model, --public-key and --bandwidth-mbps"),
        (("edge", "rollout", "digits", "--cloud", "http://127.0.0.1:1", "--token", "t"), "NAME:VERSION"),
        (("edge", "rollout", "d:2", "--cloud", "u", "--token", "t", "--steps", "10%,50%"), "end at 100%"),
        (("edge", "rollout", "d:2", "--cloud", "u", "--token", "t", "--canary", "150%"), "at most 100%"),
        (("fl", "run", "--clients", "1"), "need clients >= 2"),
        (("fl", "run", "--strategy", "fedsgd"), "unknown strategy"),
        (("fl", "run", "--secagg", "--dp-epsilon", "5", "--dp-unit", "client"), "use --dp-unit record"),
        (("fl", "run", "--dp-epsilon", "5", "--dp-unit", "user"), "unknown DP unit"),
        (("fl", "deploy", "--clients", "1"), "need clients >= 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(args))  # in-process: the same entry point as the console script, without a new interpreter
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_edge_run_pulls_a_signed_model_and_serves_it(tmp_path: Path) -> None:
    import signal
    import time

    import httpx
    import torch

    from skyline.edge.cloud import CloudConfig, EdgeCloud
    from skyline.edge.cloud_app import edge_authority
    from skyline.edge.publish import publish_model
    from skyline.security.rbac import Role
    from skyline.security.signing import generate_signing_keys
    from skyline.security.tokens import TokenAuthority
    from skyline.training.models import build_model

    private, public = generate_signing_keys(tmp_path / "signing.key", tmp_path / "signing.pub")
    torch.manual_seed(0)
    publish_model(
        build_model("linear", (1, 8, 8), 10),
        (1, 8, 8),
        root=tmp_path / "repo",
        name="digits",
        version=1,
        private_key=private,
    )
    authority, token = edge_authority(tmp_path / "cloud-tokens.json", subject="edge-agent")  # its --name
    config = CloudConfig(
        repository=tmp_path / "repo", tokens=tmp_path / "cloud-tokens.json", ingest=tmp_path / "ingest.db",
        public_key=public, port=0,
    )  # fmt: skip
    port = _free_port()
    with EdgeCloud(config, authority=authority) as cloud:
        args = [
            "edge",
            "run",
            "--cloud",
            cloud.url,
            "--token",
            token,
            "--model",
            "digits",
            "--public-key",
            str(public),
        ]
        args += [
            "--store",
            str(tmp_path / "edge"),
            "--port",
            str(port),
            "--poll-s",
            "0.5",
            "--duration-s",
            "120",
            "--tokens",
            str(tmp_path / "local-tokens.json"),
        ]
        invoker = TokenAuthority(tmp_path / "local-tokens.json").issue("app-1", Role.INVOKER)
        agent = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.app", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            health: dict[str, object] = {}
            for _ in range(300):
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health").json()
                except httpx.HTTPError:
                    health = {}
                if health.get("model_version") == 1:
                    break
                time.sleep(0.2)
            assert health == {"status": "ok", "model_version": 1}
            body = {
                "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]
            }
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            assert httpx.post(url, json=body).status_code == 401  # the local API is not open to anyone
            answer = httpx.post(url, json=body, headers={"authorization": f"Bearer {invoker}"}).json()
            assert answer["model_version"] == "1" and len(answer["outputs"][0]["data"]) == 10
        finally:
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
