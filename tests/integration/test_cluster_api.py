"""The control plane end to end on loopback: a real server, agents as real processes, real jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.testing.cluster import AgentProcess, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Env:
    server: ServerThread
    tokens: dict[str, str]
    log_dir: Path

    def client(self, who: str = "admin") -> ClusterClient:
        return ClusterClient(self.server.url, self.tokens[who])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("cluster")
    config = ServerConfig(state_dir=folder, port=0, control=ControlConfig(tick_s=0.2, lost_after_s=3.0))
    server = ServerThread(config).start()
    authority = server.built.authority
    tokens = {
        "admin": authority.bootstrap_admin() or "",
        "alice": authority.issue("alice", "operator"),
        "bob": authority.issue("bob", "operator"),
        "viewer": authority.issue("carol", "viewer"),
        "agent": authority.issue("agent-1", "agent"),
    }
    agents = [AgentProcess(server.url, tokens["agent"], name, log_dir=folder) for name in ("n1", "n2")]
    try:
        with ClusterClient(server.url, tokens["admin"]) as admin:
            wait_until(lambda: len([n for n in admin.nodes() if n["status"] == "alive"]) == 2)
        yield Env(server, tokens, folder)
    finally:
        for agent in agents:
            agent.stop()
        server.stop()


def test_a_job_goes_from_queued_to_finished_with_its_logs(env: Env) -> None:
    with env.client("alice") as alice:
        job = alice.submit(
            {"command": "echo hello from $RANK of $WORLD_SIZE; echo second line", "name": "hello"}
        )
        assert job["status"] == "pending" and job["owner"] == "alice"
        seen = {job["status"]}
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            job = alice.job(job["id"])
            seen.add(job["status"])
            time.sleep(0.02)
        assert job["status"] == "succeeded" and job["exit_code"] == 0
        assert job["placement"][0]["node_id"] in ("n1", "n2")
        assert job["placed_at"] <= job["started_at"] <= job["finished_at"]
        lines = [ln["line"] for ln in alice.logs(job["id"])["lines"]]
        assert lines == ["hello from 0 of 1", "second line"]


def test_a_failing_job_reports_its_exit_code_and_last_lines(env: Env) -> None:
    with env.client() as admin:
        job = admin.submit({"command": "echo about to fail; exit 7"})
        done = admin.wait(job["id"], timeout_s=30)
    assert done["status"] == "failed" and done["exit_code"] == 7
    assert "about to fail" in done["message"]


def test_a_gang_gets_all_its_replicas_or_none(env: Env) -> None:
    with env.client() as admin:
        # Fill both 2-CPU nodes, then ask for a gang of 2 x 1 CPU: no node can hold it whole.
        fillers = [admin.submit({"command": "sleep 60", "cpus": 2}) for _ in range(2)]
        wait_until(lambda: all(admin.job(f["id"])["status"] == "running" for f in fillers))
        gang = admin.submit({"command": "echo rank $RANK of $WORLD_SIZE", "replicas": 2, "cpus": 1})
        time.sleep(1.0)  # several scheduling passes
        waiting = admin.job(gang["id"])
        assert waiting["status"] == "pending" and waiting["placement"] == []
        admin.cancel(fillers[0]["id"])  # frees one node: the whole gang fits there
        done = admin.wait(gang["id"], timeout_s=30)
        assert done["status"] == "succeeded"
        assert len({r["node_id"] for r in done["placement"]}) == 1 and len(done["placement"]) == 2
        lines = sorted(ln["line"] for ln in admin.logs(gang["id"])["lines"])
        assert lines == ["rank 0 of 2", "rank 1 of 2"]
        admin.cancel(fillers[1]["id"])


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_cancel_stops_the_running_process(env: Env) -> None:
    with env.client("alice") as alice:
        job = alice.submit({"command": "sleep 31.25"})
        wait_until(lambda: alice.job(job["id"])["status"] == "running")
        wait_until(lambda: _processes_with("sleep 31.25"))
        assert alice.cancel(job["id"])["status"] == "cancelled"
        wait_until(lambda: alice.job(job["id"])["placement"][0]["status"] == "stopped", timeout_s=15)
        assert not _processes_with("sleep 31.25")


def test_a_repeated_idempotency_key_does_not_duplicate_the_job(env: Env) -> None:
    body = {"command": "true"}
    headers = {"Authorization": f"Bearer {env.tokens['alice']}", "Idempotency-Key": "submit-42"}
    first = httpx.post(env.server.url + "/v1/jobs", json=body, headers=headers)
    again = httpx.post(env.server.url + "/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_concurrent_submits_with_one_idempotency_key_make_one_job(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.tokens['alice']}", "Idempotency-Key": "submit-together"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=env.server.url, headers=headers) as client:
            calls = [client.post("/v1/jobs", json={"command": "true", "name": f"t{i}"}) for i in range(8)]
            return list(await asyncio.gather(*calls))

    answers = asyncio.run(burst())
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": ""},
        {"command": "true", "replicas": 0},
        {"command": "true", "cpus": -1},
        {"command": "true", "cpus": 0, "memory_mib": 0},
        {"command": "true", "tiers": ["moon"]},
        {"command": "true", "surprise": 1},
        {"command": "true", "env": {"1BAD": "x"}},
        {"command": "nul\x00inside"},
        ["not", "an", "object"],
    ],
)
def test_malformed_job_specs_are_422_with_a_clear_message(env: Env, body: object) -> None:
    response = httpx.post(
        env.server.url + "/v1/jobs", json=body, headers={"Authorization": f"Bearer {env.tokens['admin']}"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]


def test_a_heartbeat_refuses_reports_about_another_nodes_replicas(env: Env) -> None:
    with env.client("admin") as admin:
        job = admin.wait(admin.submit({"command": "true"})["id"])
    node = job["placement"][0]["node_id"]
    stranger = "n2" if node == "n1" else "n1"
    report = {"job_id": job["id"], "attempt": 0, "rank": 0, "status": "failed", "exit_code": 9}
    beat = {"cpu_percent": 1.0, "memory_percent": 1.0, "replicas": [report]}
    with env.client("agent") as agent:
        answer = agent.heartbeat(stranger, beat)
    assert answer["reports"] == [
        {"accepted": False, "error": f"no replica 0 of job {job['id']} attempt 0 on node {stranger}"}
    ]
    with env.client("admin") as admin:
        assert admin.job(job["id"])["status"] == "succeeded"


def test_utilization_history_and_prometheus_exposition(env: Env) -> None:
    with env.client("viewer") as viewer:
        history = wait_until(lambda: viewer.metrics("n1"))
        assert 0 <= history[-1]["cpu_percent"] <= 100
    headers = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    text = httpx.get(env.server.url + "/metrics", headers=headers).text
    assert 'skyline_node_cpu_percent{node="n1"}' in text
    assert 'skyline_jobs{status="succeeded"}' in text


def test_a_lost_agent_has_its_job_requeued_and_finished_elsewhere(env: Env) -> None:
    victim = AgentProcess(env.server.url, env.tokens["agent"], "victim", log_dir=env.log_dir, cpus=3)
    rescuer = None
    try:
        with env.client() as admin:
            # Only the victim can hold 3 CPUs: a job no registered node could hold is refused (422).
            wait_until(lambda: "victim" in {n["id"] for n in admin.nodes()})
            job = admin.submit({"command": "sleep 3; echo finished on attempt", "cpus": 3})
            running = wait_until(lambda: (j := admin.job(job["id"]))["status"] == "running" and j)
            assert running["placement"][0]["node_id"] == "victim"
            victim.kill()
            requeued = wait_until(lambda: (j := admin.job(job["id"]))["restarts"] == 1 and j, timeout_s=20)
            assert requeued["status"] == "pending"
            assert {n["id"]: n["status"] for n in admin.nodes()}["victim"] == "lost"
            rescuer = AgentProcess(
                env.server.url, env.tokens["agent"], "rescuer", log_dir=env.log_dir, cpus=3
            )
            done = admin.wait(job["id"], timeout_s=30)
        assert done["status"] == "succeeded" and done["restarts"] == 1 and done["attempt"] == 1
        assert done["placement"][0]["node_id"] == "rescuer"
    finally:
        victim.kill()
        if rescuer is not None:
            rescuer.stop()


def test_a_taken_port_is_one_error_and_leaves_nothing_open(tmp_path: Path) -> None:
    import socket

    from skyline.core.net import free_port
    from skyline.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        gateway_port = free_port()
        config = ServerConfig(state_dir=tmp_path, port=taken.getsockname()[1], gateway_port=gateway_port)
        with pytest.raises(ConfigError, match="--port"):
            ServerThread(config)
    with socket.socket() as again:  # the gateway's socket was closed with the rest of what build() opened
        again.bind(("127.0.0.1", gateway_port))
