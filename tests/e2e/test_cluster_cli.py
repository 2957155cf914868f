"""The control plane as users run it: `skyline cluster up`, `skyline job ...`, and a SIGKILL of the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from skyline.cluster.client import ClusterClient
from skyline.security.tokens import TokenAuthority
from skyline.testing.cluster import AgentProcess, ServerProcess, kill_local_agent, wait_until
from skyline.testing.executors import process_alive

pytestmark = pytest.mark.e2e


def skyline(*args: str, server: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYLINE_SERVER": server, "SKYLINE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_submit_status_logs_list_and_errors(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "state", extra=("--heartbeat-s", "0.2", "--tick-s", "0.2"))
    try:
        assert server.admin_token is not None
        url, token = server.url, server.admin_token
        job_file = tmp_path / "job.yaml"
        job_file.write_text("name: twice\ncommand: echo replica $RANK\nreplicas: 2\ncpus: 0.5\n")
        submitted = skyline("job", "submit", str(job_file), "--wait", "--json", "-", server=url, token=token)
        assert submitted.returncode == 0, submitted.stderr
        job = json.loads(submitted.stdout)
        assert job["status"] == "succeeded" and job["name"] == "twice" and len(job["placement"]) == 2
        status = skyline(
            "job", "status", job["id"], "--json", str(tmp_path / "s.json"), server=url, token=token
        )
        assert status.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["id"] == job["id"]
        logs = skyline("job", "logs", job["id"], "--follow", server=url, token=token)
        assert sorted(logs.stdout.splitlines()) == ["[0] replica 0", "[1] replica 1"]
        listed = skyline("job", "list", "--json", "-", server=url, token=token)
        assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
        nodes = skyline("node", "list", "--json", "-", server=url, token=token)
        assert [n["id"] for n in json.loads(nodes.stdout)] == ["local"]
        missing = skyline("job", "status", "j-missing", server=url, token=token)
        assert (
            missing.returncode == 2
            and missing.stderr.startswith("error: no job")
            and "Traceback" not in missing.stderr
        )
        bad = skyline("job", "submit", "--command", "true", "--replicas", "0", server=url, token=token)
        assert bad.returncode == 2 and "replicas" in bad.stderr
        denied = skyline("job", "list", server=url, token="sky_0123456789ab_wrong")
        assert denied.returncode == 2 and "token" in denied.stderr
    finally:
        server.stop()


def test_sigterm_stops_the_server_and_the_local_agent_it_started(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "state", extra=("--heartbeat-s", "0.2"))
    agent_pid = int((tmp_path / "state" / "agent.pid").read_text())
    server.stop()  # SIGTERM
    assert server.process.returncode == 0
    assert wait_until(lambda: not process_alive(agent_pid), timeout_s=20)
    assert not (tmp_path / "state" / "agent.pid").exists()


def test_a_sigkilled_server_restarts_from_its_database_and_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ServerProcess(state, extra=("--heartbeat-s", "0.2", "--tick-s", "0.2"))
    second = None
    try:
        assert first.admin_token is not None
        token, port = first.admin_token, first.url.rsplit(":", 1)[1]
        client = ClusterClient(first.url, token)
        running = client.submit({"command": "sleep 3; echo survived", "name": "long"})
        queued = [client.submit({"command": f"echo job {i}", "cpus": 0.25}) for i in range(3)]
        wait_until(lambda: client.job(running["id"])["status"] == "running")
        first.sigkill()
        # While the server is down, a client keeps retrying one submission under one idempotency key.
        retried: dict[str, object] = {}
        retry = threading.Thread(
            target=lambda: retried.update(
                client.submit_with_retry(
                    {"command": "echo retried"}, idempotency_key="retry-1", wait_s=0.2, attempts=300
                )
            )
        )
        retry.start()
        second = ServerProcess(state, port=int(port), extra=("--heartbeat-s", "0.2", "--tick-s", "0.2"))
        assert second.admin_token is None  # the first admin token is printed once, ever
        retry.join(timeout=60)
        again = client.submit({"command": "echo retried"}, idempotency_key="retry-1")
        assert again["id"] == retried["id"]
        done = client.wait(running["id"], timeout_s=60)
        assert done["status"] == "succeeded" and done["restarts"] == 0  # the agent kept it running
        assert [ln["line"] for ln in client.logs(running["id"])["lines"]] == ["survived"]
        for job in queued:
            assert client.wait(job["id"], timeout_s=60)["status"] == "succeeded"
        jobs = client.jobs()
        assert len(jobs) == 5 and sum(1 for j in jobs if j["idempotency_key"] == "retry-1") == 1
        client.close()
        # The second server adopted the agent the first one started (and minted it no second token):
        # its clean stop ends it too, and revokes its token.
        agent_tokens = [r for r in TokenAuthority(state / "tokens.json").records() if r.role == "agent"]
        assert len(agent_tokens) == 1
        agent_pid = int((state / "agent.pid").read_text())
        second.stop()
        assert second.process.returncode == 0
        assert wait_until(lambda: not process_alive(agent_pid), timeout_s=20)
        assert not (state / "agent.pid").exists()
        agent_tokens = [r for r in TokenAuthority(state / "tokens.json").records() if r.role == "agent"]
        assert len(agent_tokens) == 1 and agent_tokens[0].revoked_at is not None
    finally:
        first.stop()
        if second is not None:
            second.stop()
        kill_local_agent(state)


@pytest.mark.slow
def test_attained_service_survives_a_sigkill_of_the_control_plane(tmp_path: Path) -> None:
    state = tmp_path / "state"
    extra = ("--no-agent", "--tick-s", "0.2")
    first = ServerProcess(state, extra=extra)
    second = agent = None
    try:
        assert first.admin_token is not None
        client = ClusterClient(first.url, first.admin_token)
        agent_token = client.create_token("gpu-node", "agent")
        agent = AgentProcess(first.url, agent_token, "gpu-node", log_dir=tmp_path, gpus=2)
        wait_until(lambda: client.nodes())
        job = client.submit({"command": "sleep 60", "gpus": 1, "replicas": 2, "cpus": 0.1})
        wait_until(lambda: client.job(job["id"])["status"] == "running")
        time.sleep(1.5)
        before = client.job(job["id"])["attained_gpu_s"]
        assert before >= 2.0  # 2 GPUs for ~1 s and more
        first.sigkill()
        time.sleep(1.0)  # the job keeps running under its agent while no server is up
        port = int(first.url.rsplit(":", 1)[1])
        second = ServerProcess(state, port=port, extra=extra)
        after = client.job(job["id"])
        assert after["status"] == "running" and after["restarts"] == 0
        assert after["attained_gpu_s"] >= before + 2 * 1.0  # it kept counting across the outage
        client.cancel(job["id"])
        client.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if agent is not None:
            agent.stop()
