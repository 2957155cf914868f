"""Harnesses for the executor contract suite (tests/contract/test_cluster_executors.py).

One `ExecutorHarness` per backend, each over a real store and real processes: ``local`` serves the real
API (its scheduling loop not started, so only the test places jobs) to two real `NodeAgent`s on threads;
``ray`` drives the `RayExecutor` over a Ray instance on this machine whose one node carries the custom
resources of two skyline nodes. The test plays the control plane's part: it submits, calls the executor,
and `pump` moves the executor's events into the store as `ControlPlane.run_once` does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.cluster.control import ClusterExecutor
from skyline.cluster.records import JobRecord
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import JobStatus, Placement, Resources
from skyline.core.net import PortRange

NODES = ("n0", "n1")  # two skyline nodes, 2 CPUs each
NODE_CPUS = 2
MASTER_PORTS = PortRange(first=29500, last=29999)
RAY_STORE_BYTES = 80 * 1024**2


@dataclass
class ExecutorHarness:
    """A backend under test: its store, its executor, and how long its replicas take to show up."""

    name: str
    store: Store
    executor: ClusterExecutor

    def submit(self, command: str, *, replicas: int = 2, cpus: float = 1.0) -> JobRecord:
        request = JobRequest(
            command=command, replicas=replicas, resources=Resources.of(cpus=cpus, memory_mib=64)
        )
        record, _ = self.store.jobs.submit(request, owner="contract")
        return record

    def start(self, record: JobRecord, nodes: tuple[str, ...]) -> None:
        """What a scheduling pass does once the policy chose ``nodes`` (one per replica)."""
        placements = [Placement(node_id=n, resources=record.resources) for n in nodes]
        self.executor.start(record.as_job().spec, placements)
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
        return [row["line"] for row in self.store.jobs.logs(job_id) if rank is None or row["rank"] == rank]


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

    agents: list[tuple[NodeAgent, threading.Thread]] = []
    try:
        for name in names:
            client = ClusterClient(url, authority.issue(f"agent-{name}", "agent"))
            config = AgentConfig(name=name, cpus=cpus, memory_mib=4096, gpus=0, heartbeat_s=0.1)
            agent = NodeAgent(client, config)
            thread = threading.Thread(target=agent.run, name=f"agent-{name}", daemon=True)
            thread.start()
            agents.append((agent, thread))
        yield
    finally:
        for agent, thread in agents:
            agent.stop()
            thread.join(timeout=30)
            agent.client.close()


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
        built.control.executor.close()
        built.store.close()


@contextlib.contextmanager
def ray_harness(state_dir: Path) -> Iterator[ExecutorHarness]:
    """`RayExecutor` over a one-node Ray instance that carries both skyline nodes' custom resources."""
    import ray

    from skyline.cluster.ray_executor import NODE_RESOURCE_PREFIX, RayExecutor

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning at init
    ray.init(
        num_cpus=NODE_CPUS * len(NODES),
        resources={f"{NODE_RESOURCE_PREFIX}{n}": 1 for n in NODES},
        object_store_memory=RAY_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
    )
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


HARNESSES: dict[str, Callable[[Path], contextlib.AbstractContextManager[ExecutorHarness]]] = {
    "local": local_harness,
    "ray": ray_harness,
}


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)
