"""Harnesses for the executor contract suite (tests/contract/test_executor_contract.py).

One harness per member of the executor family. ``local`` serves the real API (its scheduling loop not
started, so only the test places jobs) to two real `NodeAgent`s on threads; ``ray`` drives the
`RayExecutor` over a Ray instance on this machine whose one node carries the custom resources of two
skyline nodes; ``sim`` drives the simulator's `SimExecutor` on a simulated clock, the world around it
doing what `skyline.simulation.engine.Simulation` does (a job ends when its work is done). The test plays
the scheduler's part: it makes jobs, starts and stops them through the executor, and lets time pass.

Every harness answers the port-level questions (`job`, `start_job`, `stop`, `wait_job`, `history`,
`advance`); the store-backed ones (`ExecutorHarness`) also expose the store for the questions only a
control plane has (log lines, rendezvous ports, cancellation).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.cluster.executors import ClusterExecutor
from skyline.cluster.records import JobRecord
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import JobSpec, JobStatus, Placement, Resources
from skyline.core.net import PortRange

NODES = ("n0", "n1")  # two skyline nodes, 2 CPUs each
NODE_CPUS = 2
MASTER_PORTS = PortRange(first=29500, last=29999)
RAY_STORE_BYTES = 80 * 1024**2


@dataclass
class ExecutorHarness:
    """A control-plane backend under test: its store and its executor (real replicas)."""

    name: str
    store: Store
    executor: ClusterExecutor
    has_store = True

    # ---------------------------------------------------------------- the port-level contract
    def job(self, *, seconds: float, replicas: int = 2) -> JobSpec:
        """A gang whose replicas run for ``seconds`` and exit 0."""
        return self.submit(f"sleep {seconds}", replicas=replicas, cpus=0.5).as_spec()

    def start_job(self, spec: JobSpec) -> None:
        self.start(self.store.jobs.get(spec.id), NODES[: spec.replicas])

    def stop(self, job_id: str) -> None:
        self.executor.stop(job_id)

    def wait_job(self, job_id: str, *statuses: JobStatus, timeout_s: float = 30.0) -> JobStatus:
        return self.wait_status(job_id, *statuses, timeout_s=timeout_s).status

    def history(self, job_id: str) -> list[str]:
        """The job's transitions after it was placed, oldest first (from the store's job events)."""
        import sqlalchemy as sa

        from skyline.cluster import schema

        events = schema.job_events.c
        query = sa.select(events.status).where(events.job_id == job_id).order_by(events.id)
        with self.store.db.read() as conn:
            seen = [row[0] for row in conn.execute(query)]
        return seen[seen.index("placed") + 1 :] if "placed" in seen else []

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of wall time pass, pumping the executor's events into the store."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()
            time.sleep(0.05)

    # ---------------------------------------------------------------- the control plane's side

    def submit(self, command: str, *, replicas: int = 2, cpus: float = 1.0) -> JobRecord:
        request = JobRequest(
            command=command, replicas=replicas, resources=Resources.of(cpus=cpus, memory_mib=64)
        )
        record, _ = self.store.jobs.submit(request, owner="contract")
        return record

    def start(self, record: JobRecord, nodes: tuple[str, ...]) -> None:
        """What a scheduling pass does once the policy chose ``nodes`` (one per replica)."""
        placements = [Placement(node_id=n, resources=record.resources) for n in nodes]
        self.executor.start(record.as_spec(), placements)
        self.executor.flush()

    def pump(self) -> None:
        """The executor's share of a control-plane pass: poll it, apply its events to the store."""
        self.executor.refresh()
        for event in self.executor.events():
            self.store.jobs.apply_event(event)

    def wait_status(self, job_id: str, *statuses: JobStatus, timeout_s: float = 30.0) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump()
            record = self.store.jobs.get(job_id)
            if record.status in statuses:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {record.status} after {timeout_s} s, not {statuses}")
            time.sleep(0.05)

    def log_lines(self, job_id: str, rank: int | None = None) -> list[str]:
        """The job's log lines so far (of one rank when given), in arrival order."""
        return [row["line"] for row in self.store.logs.lines(job_id) if rank is None or row["rank"] == rank]


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pids_written(folder: Path, job_id: str) -> list[int]:
    """Process ids the replicas of ``job_id`` wrote (see `pidfile_command`)."""
    return [int(p.read_text()) for p in sorted(folder.glob(f"{job_id}-*.pid")) if p.read_text().strip()]


def pidfile_command(folder: Path, *, then: str = "sleep 60") -> str:
    """A replica that writes its pid to ``<job>-<rank>.pid`` in ``folder``, then becomes ``then`` (exec:
    the pid written is the process that runs it)."""
    name = f"{folder}/$SKYLINE_JOB_ID-$RANK.pid"
    return f'echo $$ > "{name}.tmp" && mv "{name}.tmp" "{name}" && exec {then}'


@contextlib.contextmanager
def node_agents(
    url: str, authority: Any, names: tuple[str, ...] = NODES, *, cpus: float = NODE_CPUS
) -> Iterator[None]:
    """Real `NodeAgent`s on threads of this process, one per name, joined to the control plane at ``url``
    (``authority`` issues their tokens); stopped, with their replicas, on exit."""
    from skyline.cluster.agent import AgentConfig, NodeAgent
    from skyline.cluster.client import ClusterClient

    with contextlib.ExitStack() as stack:
        for name in names:
            client = ClusterClient(url, authority.issue(f"agent-{name}", "agent"))
            config = AgentConfig(name=name, cpus=cpus, memory_mib=4096, gpus=0, heartbeat_s=0.1)
            stack.enter_context(NodeAgent(client, config).in_background())
        yield


@contextlib.contextmanager
def local_harness(state_dir: Path) -> Iterator[ExecutorHarness]:
    """`AgentExecutor` over the real API (its loop not started), with two real `NodeAgent`s."""
    from skyline.cluster.server import ServerConfig, build
    from skyline.testing.api_targets import serve_app

    built = build(ServerConfig(state_dir=state_dir, port=0, executor="local", master_ports=MASTER_PORTS))
    harness = ExecutorHarness(name="local", store=built.store, executor=built.control.executor)
    try:
        with serve_app(built.app) as url, node_agents(url, built.authority):
            _wait(lambda: len(built.store.nodes.find(alive_only=True)) == len(NODES), "agents registered")
            yield harness
    finally:
        built.services.stop()
        built.control.executor.close()
        built.store.close()


@contextlib.contextmanager
def ray_harness(state_dir: Path) -> Iterator[ExecutorHarness]:
    """`RayExecutor` over a one-node Ray instance that carries both skyline nodes' custom resources."""
    import ray

    from skyline.cluster.ray_executor import NODE_RESOURCE_PREFIX, RayExecutor

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning at init
    try:
        ray.init(
            num_cpus=NODE_CPUS * len(NODES),
            resources={f"{NODE_RESOURCE_PREFIX}{n}": 1 for n in NODES},
            object_store_memory=RAY_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
        )
    except Exception:  # e.g. a node that timed out starting: collect Ray's process handles here, not later
        ray.shutdown()
        gc.collect()
        raise
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{state_dir / 'cluster.db'}")
    try:
        executor = RayExecutor(store, master_ports=MASTER_PORTS)
        try:
            yield ExecutorHarness(name="ray", store=store, executor=executor)
        finally:
            executor.close()
    finally:
        store.close()
        ray.shutdown()
        # Ray leaves unclosed file handles behind; collect them now, while the suite that expects them
        # runs, rather than during whichever test the garbage collector happens to run in next.
        gc.collect()


class SimHarness:
    """The simulator's `SimExecutor` on a simulated clock; a started job succeeds when its
    ``duration_s`` of work is done, a stopped one goes back to pending (as in `Simulation`)."""

    name = "sim"
    has_store = False

    def __init__(self) -> None:
        from skyline.simulation.executor import SimClock, SimExecutor

        self.clock = SimClock()
        self.executor = SimExecutor(self.clock, self._started, self._stopped)
        self._ends: dict[str, float] = {}  # running job → when its work is done
        self._history: dict[str, list[str]] = {}
        self._count = 0

    def _started(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        assert len(placements) == spec.replicas and spec.duration_s is not None
        self._ends[spec.id] = self.clock.now_s() + spec.duration_s

    def _stopped(self, job_id: str) -> None:
        del self._ends[job_id]  # its resources are free: it is no longer running
        self._history[job_id].append(str(JobStatus.PENDING))

    def _drain(self) -> None:
        for event in self.executor.events():
            self._history.setdefault(event.job_id, []).append(str(event.status))

    def job(self, *, seconds: float, replicas: int = 2) -> JobSpec:
        self._count += 1
        return JobSpec(
            id=f"sim-{self._count}", resources=Resources.of(cpus=0.5), replicas=replicas, duration_s=seconds
        )

    def start_job(self, spec: JobSpec) -> None:
        self._history.setdefault(spec.id, [])
        self.executor.start(
            spec, [Placement(node_id=n, resources=spec.resources) for n in NODES[: spec.replicas]]
        )

    def stop(self, job_id: str) -> None:
        self.executor.stop(job_id)

    def history(self, job_id: str) -> list[str]:
        self._drain()
        return list(self._history.get(job_id, []))

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, ending every job whose work is done on the way."""
        until = self.clock.now_s() + seconds
        while self._ends and min(self._ends.values()) <= until:
            job_id = min(self._ends, key=self._ends.__getitem__)
            self.clock.t = self._ends.pop(job_id)
            self.executor.finished(job_id)
        self.clock.t = until
        self._drain()

    def wait_job(self, job_id: str, *statuses: JobStatus, timeout_s: float = 30.0) -> JobStatus:
        """Advance event by event until the job is in one of ``statuses`` (or nothing is left to happen)."""
        wanted = {str(s) for s in statuses}
        while True:
            seen = self.history(job_id)
            if seen and seen[-1] in wanted:
                return JobStatus(seen[-1])
            if not self._ends:
                raise AssertionError(f"job {job_id} never became {statuses}: {seen}")
            self.advance(min(self._ends.values()) - self.clock.now_s())


@contextlib.contextmanager
def sim_harness(_state_dir: Path) -> Iterator[SimHarness]:
    yield SimHarness()


HARNESSES: dict[str, Callable[[Path], contextlib.AbstractContextManager[ExecutorHarness | SimHarness]]] = {
    "local": local_harness,
    "ray": ray_harness,
    "sim": sim_harness,
}


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)
