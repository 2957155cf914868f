"""Fidelity: one trace slice replayed on the live control plane and in the simulator, same policy.

The live side is real: a control plane on this machine (`ServerThread`), several node agents as
processes (each offering ``gpus_per_node`` GPU slots), and every job a gang of real processes
(`skyline.cluster.sleeper`) that work for the job's duration and checkpoint, so a preempted job resumes
where it stopped. Jobs are submitted at their (scaled) arrival times. The simulator then replays the
same jobs, arriving when the live ones were submitted, on the same nodes under the same policy and
options. Per job and on average, how far is the simulated completion time from the live one?
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skyline.cluster import sleeper
from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.errors import ConfigError, UnavailableError
from skyline.scheduling.packing import NodeSpec
from skyline.scheduling.policies import policy_class
from skyline.scheduling.policy import PolicyOptions
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.trace import Trace, TraceJob

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class FidelityConfig:
    """A replay: ``jobs`` (submit and duration in live seconds; each GPU a one-GPU replica) on ``nodes``
    agents of ``gpus_per_node`` GPU slots under ``policy`` (with its ``policy_options``)."""

    jobs: tuple[TraceJob, ...]
    policy: str
    policy_options: PolicyOptions | None = None
    nodes: int = 4
    gpus_per_node: int = 8
    work_dir: Path
    tick_s: float = 0.1
    heartbeat_s: float = 0.1
    busy: bool = False  # replicas spin the CPU instead of sleeping
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.jobs:
            raise ConfigError("a fidelity run needs at least one job")
        policy_class(self.policy)
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ConfigError(f"need >= 1 node of >= 1 GPU, got {self.nodes}x{self.gpus_per_node}")
        too_big = [
            j.id for j in self.jobs if j.replicas > self.nodes * self.gpus_per_node or j.gpu_milli != 1000
        ]
        if too_big:
            raise ConfigError(f"jobs {too_big[:5]} are not gangs of one-GPU replicas that fit the cluster")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFidelity:
    id: str
    gpus: int
    duration_s: float
    live_jct_s: float
    sim_jct_s: float
    live_restarts: int
    sim_preemptions: int

    @property
    def error(self) -> float:
        """Relative JCT error of the simulation against the live run."""
        return (self.sim_jct_s - self.live_jct_s) / self.live_jct_s


@dataclass(frozen=True, slots=True, kw_only=True)
class FidelityResult:
    policy: str
    jobs: tuple[JobFidelity, ...]
    live_wall_s: float
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Mean JCT live and simulated, their relative error, and the per-job error distribution."""
        live = statistics.fmean(j.live_jct_s for j in self.jobs)
        sim = statistics.fmean(j.sim_jct_s for j in self.jobs)
        errors = sorted(abs(j.error) for j in self.jobs)
        return {
            "policy": self.policy,
            "jobs": len(self.jobs),
            "mean_jct_live_s": live,
            "mean_jct_sim_s": sim,
            "mean_jct_error": (sim - live) / live,
            "job_abs_error_median": errors[len(errors) // 2],
            "job_abs_error_p90": errors[min(len(errors) - 1, int(0.9 * len(errors)))],
            "preemptions_live": sum(j.live_restarts for j in self.jobs),
            "preemptions_sim": sum(j.sim_preemptions for j in self.jobs),
            "live_wall_s": self.live_wall_s,
            **self.config,
        }


def run_fidelity(config: FidelityConfig, progress: Callable[[int], None] | None = None) -> FidelityResult:
    """Replay live, then in the simulator; the per-job comparison."""
    started = time.monotonic()
    live = _run_live(config, progress)
    wall = time.monotonic() - started
    t0 = min(job["submitted_at"] for job in live.values())
    arrivals = tuple(replace(j, submit_s=live[j.id]["submitted_at"] - t0) for j in config.jobs)
    nodes = tuple(NodeSpec(id=f"node-{i}", gpus=config.gpus_per_node) for i in range(config.nodes))
    policy = policy_class(config.policy)(config.policy_options)
    outcome = simulate(Trace(name="fidelity", jobs=arrivals), policy, nodes=nodes, config=SimConfig())
    by_id = {j.id: k for k, j in enumerate(outcome.trace.jobs)}
    rows = []
    for job in config.jobs:
        record, k = live[job.id], by_id[job.id]
        finish = outcome.finish[k]
        if record["status"] != "succeeded" or finish is None:
            raise UnavailableError(f"job {job.id} did not finish in both worlds ({record['status']})")
        rows.append(
            JobFidelity(
                id=job.id, gpus=job.replicas, duration_s=job.duration_s,
                live_jct_s=record["finished_at"] - record["submitted_at"],
                sim_jct_s=finish - outcome.trace.jobs[k].submit_s,
                live_restarts=record["restarts"], sim_preemptions=outcome.preemptions[k],
            )
        )  # fmt: skip
    settings = {"nodes": config.nodes, "gpus_per_node": config.gpus_per_node, "tick_s": config.tick_s}
    return FidelityResult(policy=config.policy, jobs=tuple(rows), live_wall_s=wall, config=settings)


def _run_live(config: FidelityConfig, progress: Callable[[int], None] | None) -> dict[str, dict[str, Any]]:
    """Submit every job at its time to a live control plane and wait until all finished."""
    state = config.work_dir / "state"
    server_config = ServerConfig(
        state_dir=state, port=0, policy=config.policy, policy_options=config.policy_options,
        control=ControlConfig(tick_s=config.tick_s, lost_after_s=max(10.0, 20 * config.heartbeat_s)),
    )  # fmt: skip
    with ServerThread(server_config) as server:
        authority = server.built.authority
        token = authority.bootstrap_admin() or authority.issue("fidelity", "admin")
        with (
            _agents(config, server.url, authority.issue("fidelity-agents", "agent")),
            ClusterClient(server.url, token) as client,
        ):
            _wait_for_nodes(client, config.nodes)
            ids = _submit_on_time(client, config)
            return _wait_all(client, ids, config.timeout_s, progress)


@contextlib.contextmanager
def _agents(config: FidelityConfig, url: str, token: str) -> Iterator[None]:
    """``config.nodes`` agent processes on this machine, stopped (with their replicas) on exit."""
    processes: list[subprocess.Popen[bytes]] = []
    log_dir = config.work_dir / "agents"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i in range(config.nodes):
            command = [sys.executable, "-m", "skyline.cli.app", "agent", "join", "--server", url]
            command += ["--name", f"node-{i}", "--heartbeat-s", str(config.heartbeat_s), "--cpus", "64"]
            command += ["--memory-mib", "65536", "--gpus", str(config.gpus_per_node)]
            with (log_dir / f"node-{i}.log").open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        command, env={**os.environ, "SKYLINE_TOKEN": token}, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )  # fmt: skip
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)


def _wait_for_nodes(client: ClusterClient, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(1 for n in client.nodes() if n["status"] == "alive") < count:
        if time.monotonic() > deadline:
            raise UnavailableError(f"{count} agents did not register within {timeout_s:g} s")
        time.sleep(0.1)


def _command(config: FidelityConfig, job: TraceJob) -> str:
    """The sleeper run by path with ``-S -E`` (standard library only): it starts in milliseconds, so a
    job's start-up adds little to its completion time beyond what a real one would."""
    checkpoint = config.work_dir / "checkpoints" / f"{job.id}-$RANK.ckpt"
    busy = " --busy" if config.busy else ""
    script = sleeper.__file__
    return f'{sys.executable} -S -E {script} --seconds {job.duration_s:.3f} --checkpoint "{checkpoint}"{busy}'


def _submit_on_time(client: ClusterClient, config: FidelityConfig) -> dict[str, str]:
    """Submit each job at its arrival time (relative to the first); live job id by trace job id."""
    (config.work_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    ids: dict[str, str] = {}
    for job in sorted(config.jobs, key=lambda j: j.submit_s):
        delay = start + job.submit_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = {
            "command": _command(config, job), "name": job.id, "cpus": 0.0, "memory_mib": 0, "gpus": 1.0,
            "replicas": job.replicas, "estimate_s": job.duration_s,
        }  # fmt: skip
        ids[job.id] = client.submit(body)["id"]
    return ids


def _wait_all(
    client: ClusterClient, ids: dict[str, str], timeout_s: float, progress: Callable[[int], None] | None
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        if time.monotonic() > deadline:
            raise UnavailableError(f"{len(ids) - len(done)} job(s) unfinished after {timeout_s:g} s")
        by_live_id = {j["id"]: j for j in client.jobs(status=[])}
        finished = {
            name: by_live_id[live_id]
            for name, live_id in ids.items()
            if name not in done and by_live_id.get(live_id, {}).get("status") in FINISHED
        }
        done.update(finished)
        if progress is not None and finished:
            progress(len(finished))
        time.sleep(0.25)
    return done


def scale_slice(
    trace: Trace, *, start: int, jobs: int, time_scale: float, min_s: float, max_gpus: int
) -> tuple[TraceJob, ...]:
    """``jobs`` consecutive jobs of ``trace`` from ``start`` (gangs of at most ``max_gpus``), arrivals and
    durations multiplied by ``time_scale`` (durations at least ``min_s``), the first arriving at 0."""
    chosen = [j for j in trace.jobs[start:] if j.replicas * j.gpu_milli <= max_gpus * 1000][:jobs]
    if not chosen:
        raise ConfigError(f"no job of {trace.name} from {start} fits {max_gpus} GPUs")
    t0 = chosen[0].submit_s
    return tuple(
        replace(
            j, id=f"f{k}", submit_s=(j.submit_s - t0) * time_scale,
            duration_s=max(j.duration_s * time_scale, min_s), gpu_milli=1000,
        )
        for k, j in enumerate(chosen)
    )  # fmt: skip
