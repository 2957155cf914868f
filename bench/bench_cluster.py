"""Control-plane benchmark: 100 simulated agents + 1,000 queued jobs, skyline vs Ray's job submission API.

skyline: ``skyline cluster up`` (SQLite, fifo policy, no local agent) in its own process; this process runs
100 lightweight simulated agents that speak the real agent protocol like ``skyline agent join`` does
(register; heartbeat every second; a beat 0.1 s after new assignments carrying their ``running`` reports,
and ``succeeded`` ones after ``JOB_SECONDS``) and submits 1,000 one-CPU jobs through the REST API with
``CONCURRENCY`` keep-alive connections. Every call is a real HTTP request on loopback, made with
`bench.lean_http` (httpx's own CPU per request was more than the server's on these shared cores).
Measured: submission throughput (jobs/s over the whole burst) and submit-to-placed latency from the
server's own timestamps (p50/p99).

Ray: the same 1,000 submissions against Ray's job submission API (``JobSubmissionClient.submit_job``,
entrypoint ``true``) on a local Ray head with the dashboard, same concurrency; latency is submit-to-
RUNNING (the driver started), polled every 50 ms with ``list_jobs``. Ray does more per job (a supervisor
actor and a driver process), so its latency is not the same thing as "placed"; it is the closest
public counterpart.

Targets (issue 5): ≥ 500 jobs/s and p99 submit-to-placed ≤ 100 ms on this 2-core machine. The machine is
shared with other jobs while this runs: rounds are interleaved and medians reported.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import contextlib

import httpx

from bench.lean_http import LeanConnection
from bench.record import record

AGENTS = 100
JOBS = 1000
CONCURRENCY = 16
JOB_SECONDS = 2.0
ROUNDS = int(os.environ.get("SKYLINE_BENCH_ROUNDS", "2"))  # interleaved: skyline, ray, ray, skyline ...


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class SimulatedAgents:
    """100 nodes' worth of agents in one asyncio loop: real HTTP calls, no processes run."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.stop = asyncio.Event()
        self.beats = 0
        self.errors = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._node(f"sim-{i:03d}", i / AGENTS) for i in range(AGENTS)))

    async def _node(self, node: str, offset: float) -> None:
        connection = LeanConnection(self.host, self.port, {"Authorization": f"Bearer {self.token}"})
        status, _ = await connection.request(
            "POST", "/v1/nodes", {"id": node, "cpus": 16, "memory_mib": 65536}
        )
        assert status == 201, status
        started: dict[tuple[str, int, int], float] = {}
        reports: list[dict[str, Any]] = []
        await asyncio.sleep(offset)  # spread the heartbeats over the second
        while not self.stop.is_set():
            beat = {"cpu_percent": 5.0, "memory_percent": 10.0, "replicas": reports}
            try:
                status, answer = await connection.request("POST", f"/v1/nodes/{node}/heartbeat", beat)
                if status != 200:  # counted; the reports are kept for the next beat
                    self.errors += 1
                    answer = None
            except ConnectionError:  # like a real agent: keep the reports, beat again next second
                self.errors += 1
                answer = None
            self.beats += 1
            if answer is not None:
                reports = self._reports(answer["assignments"], started)
            # Like `skyline agent join`: new reports go out at once (0.1 s tick), else beat every second.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=0.1 if reports else 1.0)
        connection.close()

    @staticmethod
    def _reports(
        assignments: list[dict[str, Any]], started: dict[tuple[str, int, int], float]
    ) -> list[dict[str, Any]]:
        now = time.monotonic()
        reports = []
        for a in assignments:
            key = (a["job_id"], a["attempt"], a["rank"])
            report = {"job_id": a["job_id"], "attempt": a["attempt"], "rank": a["rank"]}
            if key not in started:
                started[key] = now
                reports.append({**report, "status": "running"})
            elif now - started[key] >= JOB_SECONDS:
                reports.append({**report, "status": "succeeded", "exit_code": 0})
        return reports


async def _burst(submit: Any, count: int) -> float:
    """Submit ``count`` jobs with CONCURRENCY workers (``submit(worker, i)``); return the wall time in s."""
    queue = list(range(count))
    started = time.perf_counter()

    async def worker(index: int) -> None:
        while queue:
            await submit(index, queue.pop())

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return time.perf_counter() - started


def skyline_round() -> dict[str, Any]:
    from skyline.testing.cluster import ServerProcess

    state = Path(tempfile.mkdtemp(prefix="bench-cluster-")) / "state"
    # Node loss is not what this measures: a generous timeout keeps a starved heartbeat from requeueing.
    server = ServerProcess(state, extra=("--no-agent", "--policy", "fifo", "--lost-after-s", "120"))
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        agent_token = httpx.post(
            server.url + "/v1/tokens", json={"subject": "sim", "role": "agent"}, headers=admin
        ).json()["token"]
        host, port = server.url.removeprefix("http://").split(":")
        agents = SimulatedAgents(host, int(port), agent_token)
        result: dict[str, Any] = {}

        async def main() -> None:
            agents_task = asyncio.create_task(agents.run())
            watcher = LeanConnection(host, int(port), admin)
            while len((await watcher.request("GET", "/v1/nodes"))[1]) < AGENTS:
                await asyncio.sleep(0.1)
            connections = [LeanConnection(host, int(port), admin) for _ in range(CONCURRENCY)]

            async def submit(worker: int, i: int) -> None:
                body = {"command": "true", "name": f"job-{i}", "cpus": 1, "memory_mib": 256}
                for _ in range(5):  # a dropped connection is retried; the key prevents duplicates
                    try:
                        status, _ = await connections[worker].request(
                            "POST", "/v1/jobs", body, {"Idempotency-Key": f"b-{i}"}
                        )
                        assert status in (200, 201), status
                        return
                    except ConnectionError:
                        result["retries"] = result.get("retries", 0) + 1
                raise RuntimeError(f"job {i} could not be submitted")

            cpu_before, client_cpu_before = _cpu_s(server.process.pid), _cpu_s(os.getpid())
            result["submit_s"] = await _burst(submit, JOBS)
            result["server_cpu_s"] = _cpu_s(server.process.pid) - cpu_before
            result["client_cpu_s"] = _cpu_s(os.getpid()) - client_cpu_before
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                _, jobs = await watcher.request("GET", "/v1/jobs?limit=10000")
                if all(j["placed_at"] is not None or j["status"] != "pending" for j in jobs):
                    break
                await asyncio.sleep(0.2)
            result["jobs"] = jobs
            agents.stop.set()
            await agents_task
            for connection in (watcher, *connections):
                connection.close()

        asyncio.run(main())
        jobs = result["jobs"]
        latencies = [(j["placed_at"] - j["submitted_at"]) * 1000 for j in jobs if j["placed_at"] is not None]
        return {
            "jobs": len(jobs),
            "placed": len(latencies),
            "requeued_jobs": sum(1 for j in jobs if j["restarts"]),
            "submit_retries": result.get("retries", 0),
            "heartbeats": agents.beats,
            "agent_transport_errors": agents.errors,
            "submit_throughput_jobs_per_s": JOBS / result["submit_s"],
            # Server CPU per submitted job during the burst (agents' heartbeats and reports included):
            # 1000 / this is the submit rate one free core would sustain.
            "server_cpu_ms_per_job": result["server_cpu_s"] / JOBS * 1000,
            "load_client_cpu_ms_per_job": result["client_cpu_s"] / JOBS * 1000,
            "submit_to_placed_p50_ms": _percentile(latencies, 50),
            "submit_to_placed_p99_ms": _percentile(latencies, 99),
            "submit_to_placed_max_ms": max(latencies),
        }
    finally:
        server.stop()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: a measure the shared machine's load cannot skew."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def ray_round(address: str) -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    submitted: dict[str, float] = {}
    running: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            now = time.time()
            for job in client.list_jobs():
                if (
                    job.submission_id in submitted
                    and job.submission_id not in running
                    and job.status != JobStatus.PENDING
                ):
                    running[job.submission_id] = now
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    pool = ThreadPoolExecutor(CONCURRENCY)

    def submit_one(i: int) -> None:
        at = time.time()
        sid = client.submit_job(entrypoint="true")
        submitted[sid] = at

    started = time.perf_counter()
    list(pool.map(submit_one, range(JOBS)))
    submit_s = time.perf_counter() - started
    deadline = time.monotonic() + 180
    while len(running) < len(submitted) and time.monotonic() < deadline:
        time.sleep(0.2)
    done.set()
    poller.join()
    latencies = [(running[s] - submitted[s]) * 1000 for s in running]
    for sid in submitted:  # leave nothing behind for the next round (a job still running is kept)
        with contextlib.suppress(Exception):
            client.delete_job(sid)
    return {
        "jobs": len(submitted),
        "running_within_180s": len(latencies),
        "submit_throughput_jobs_per_s": JOBS / submit_s,
        "submit_to_running_p50_ms": _percentile(latencies, 50) if latencies else None,
        "submit_to_running_p99_ms": _percentile(latencies, 99) if latencies else None,
    }


def main() -> None:
    """Both contenders, interleaved; ``SKYLINE_BENCH_CONTENDERS=skyline`` runs skyline alone
    (recorded as ``cluster-skyline``, so the side-by-side file is kept)."""
    import ray

    contenders = os.environ.get("SKYLINE_BENCH_CONTENDERS", "skyline,ray").split(",")
    ray_address = ""
    if "ray" in contenders:
        context = ray.init(
            num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=True, dashboard_port=0
        )
        ray_address = "http://" + context.dashboard_url
    rounds: dict[str, list[dict[str, Any]]] = {"skyline": [], "ray": []}
    try:
        for r in range(ROUNDS):
            for name in contenders if r % 2 == 0 else contenders[::-1]:
                load = os.getloadavg()[0]
                outcome = skyline_round() if name == "skyline" else ray_round(ray_address)
                outcome["load_average_1min"] = round(load, 2)
                print(name, outcome, flush=True)
                rounds[name].append(outcome)
    finally:
        ray.shutdown()

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in rounds[name] if r.get(key) is not None]
        return statistics.median(values) if values else None

    sky_tput, ray_tput = (
        median("skyline", "submit_throughput_jobs_per_s"),
        median("ray", "submit_throughput_jobs_per_s"),
    )
    p99 = median("skyline", "submit_to_placed_p99_ms")
    results = {
        "setup": {
            "agents": AGENTS,
            "jobs": JOBS,
            "concurrency": CONCURRENCY,
            "rounds": ROUNDS,
            "note": "2 cores, server and load generator on the same machine; medians over the rounds "
            "(interleaved when more than one); "
            "load_average_1min is the machine's load when each round started (other jobs included)",
        },
        "skyline": {
            "rounds": rounds["skyline"],
            "submit_throughput_jobs_per_s": sky_tput,
            "submit_to_placed_p99_ms": p99,
            "submit_to_placed_p50_ms": median("skyline", "submit_to_placed_p50_ms"),
            "server_cpu_ms_per_job": median("skyline", "server_cpu_ms_per_job"),
        },
        "ray_job_submission": {
            "rounds": rounds["ray"],
            "submit_throughput_jobs_per_s": ray_tput,
            "submit_to_running_p99_ms": median("ray", "submit_to_running_p99_ms"),
            "submit_to_running_p50_ms": median("ray", "submit_to_running_p50_ms"),
        },
        "throughput_ratio_skyline_over_ray": (sky_tput / ray_tput) if sky_tput and ray_tput else None,
        "targets": {
            "throughput_ge_500_jobs_per_s": bool(sky_tput and sky_tput >= 500),
            "p99_submit_to_placed_le_100_ms": bool(p99 is not None and p99 <= 100),
        },
    }
    print(record("cluster" if "ray" in contenders else "cluster-skyline", results))
