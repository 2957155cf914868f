"""`skyline service ...` as users run it, against `skyline cluster up` (its local agent runs the replicas)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skyline.core.net import free_port
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import write_mlp_onnx
from skyline.testing.cluster import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BODY = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


def skyline(*args: str, server: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYLINE_SERVER": server, "SKYLINE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_deploy_scale_update_delete_and_errors(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    ModelRepository(tmp_path / "repo").add(write_mlp_onnx(tmp_path / "mlp.onnx"), name="mlp", version=1)
    gateway_port = free_port()
    server = ServerProcess(
        tmp_path / "state", extra=("--heartbeat-s", "0.2", "--gateway-port", str(gateway_port))
    )
    try:
        assert server.admin_token is not None
        out = server.out_path.read_text()
        assert re.search(rf"services gateway on\s+http://127\.0\.0\.1:{gateway_port}", out), out

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return skyline(*args, server=server.url, token=server.admin_token or "")

        spec = tmp_path / "service.yaml"
        command = f"{sys.executable} -m skyline.cli.app serve --repo {tmp_path / 'repo'} --port $PORT --insecure-no-auth-local-only"
        spec.write_text(f"name: mlp\ncommand: {command}\ncpus: 0.5\nmax_replicas: 2\nmodel: mlp:1\n")
        deployed = run("service", "deploy", str(spec), "--wait", "--json", "-")
        assert deployed.returncode == 0, deployed.stderr
        status = json.loads(deployed.stdout)
        assert status["endpoint"] == f"http://127.0.0.1:{gateway_port}/services/mlp" and status["ready"] == 1
        answer = httpx.post(status["endpoint"] + "/v2/models/mlp/infer", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"

        scaled = run("service", "scale", "mlp", "--replicas", "2", "--wait", "--json", "-")
        assert scaled.returncode == 0 and json.loads(scaled.stdout)["ready"] == 2, scaled.stderr
        listed = json.loads(run("service", "list", "--json", "-").stdout)
        assert [(s["name"], s["ready"], s["desired"]) for s in listed] == [("mlp", 2, 2)]
        shown = run("service", "status", "mlp")
        assert shown.returncode == 0 and "2/2 ready" in shown.stdout

        autoscaled = run(
            "service", "update", "mlp", "--autoscale", "reactive", "--target-rps", "50", "--json", "-"
        )
        changed = json.loads(autoscaled.stdout)
        assert changed["autoscale"] == "reactive" and changed["generation"] == 1  # no new replicas for that
        refused = run("service", "scale", "mlp", "--replicas", "1")
        assert (
            refused.returncode == 2 and "autoscaled" in refused.stderr and "Traceback" not in refused.stderr
        )

        (tmp_path / "other.yaml").write_text("name: other\ncommand: serve\n")
        for bad, why in (
            (
                ("service", "update", "mlp", "--file", str(tmp_path / "other.yaml")),
                "describes service 'other'",
            ),
            (("service", "deploy", "--name", "Bad_Name", "--command", "x"), "service name"),
            (("service", "deploy", "--name", "x", "--command", "x", "--model", "mlp"), "NAME:VERSION"),
            (
                ("service", "deploy", "--name", "x", "--command", "x", "--autoscale", "predictive"),
                "target-rps",
            ),
            (("service", "deploy", "--name", "mlp", "--command", "x"), "exists"),
            (("service", "status", "nope"), "no service"),
        ):
            result = run(*bad)
            assert result.returncode == 2 and why in result.stderr and "Traceback" not in result.stderr, (
                result.stderr
            )

        deleted = run("service", "delete", "mlp", "--wait")
        assert deleted.returncode == 0 and "deleted" in deleted.stdout
        assert httpx.post(status["endpoint"] + "/v2/models/mlp/infer", json=BODY).status_code == 404
    finally:
        server.stop()
