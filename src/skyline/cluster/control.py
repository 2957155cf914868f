"""`ControlPlane`: the loop that keeps the world matching the store.

Each pass: apply the executor's events, declare silent nodes lost (requeueing their jobs), then ask the
scheduling policy through `skyline.scheduling.Scheduler`, which starts and stops jobs via the executor.
A pass runs when something changed (a submit, a report, a cancel) and at least every ``tick_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Protocol

from skyline.cluster.job_store import ACTIVE
from skyline.cluster.store import Store
from skyline.core import (
    Allocation,
    Clock,
    Cluster,
    ClusterState,
    Executor,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
    Placement,
    Resources,
)
from skyline.errors import ConfigError
from skyline.scheduling.policy import Policy, view_of
from skyline.scheduling.scheduler import Scheduler
from skyline.scheduling.view import Decision

log = logging.getLogger("skyline.cluster")


class ClusterExecutor(Executor, Protocol):
    """An `Executor` the control plane can also notify and release (cancel) and close."""

    name: str

    def notify(self, event: JobEvent) -> None: ...

    def release(self, job_id: str) -> None: ...

    def refresh(self) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    """How often the loop runs and how long a node may stay silent before it is declared lost."""

    tick_s: float = 0.5
    lost_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.tick_s <= 60:
            raise ConfigError(f"tick_s must be in (0, 60] seconds, got {self.tick_s}")
        if not self.lost_after_s > self.tick_s:
            raise ConfigError(f"lost_after_s must exceed tick_s ({self.tick_s}), got {self.lost_after_s}")


class ControlPlane:
    """Owns the scheduling loop thread. `wake` asks for a pass now; `stop` ends the thread."""

    def __init__(
        self, store: Store, executor: ClusterExecutor, policy: Policy, clock: Clock, config: ControlConfig
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.config = config
        self.scheduler = Scheduler(policy, clock, executor)
        # A policy that never preempts decides on the queue and the capacity left (`pending_snapshot`).
        self.incremental = not policy.preemptive
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self._lost_checked_at = float("-inf")
        # Caches of what never changes: a job's spec, and where one attempt of a job was placed.
        self._specs: dict[str, JobSpec] = {}
        self._placed: dict[tuple[str, int], tuple[Placement, ...]] = {}
        self._job_cache: dict[tuple[str, str, int, int, float | None], Job] = {}
        self._cluster = Cluster()
        self._nodes_version: tuple[tuple[object, ...], ...] = ()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="skyline-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            started = time.perf_counter()
            try:
                self.run_once()
            except Exception:  # the loop must survive a bad pass; the next one retries from the store
                log.exception("control-plane pass failed")
            # Rest half as long as the pass took (at most tick_s): under a burst of submissions the next
            # pass then places a batch, and the API's event loop gets the interpreter in between. A longer
            # rest places bigger batches (more jobs/s, each pass has a fixed cost) but later (a higher p99);
            # with the control-plane benchmark, half a pass kept p99 well under 100 ms at > 500 jobs/s.
            self._stop.wait(min(0.5 * (time.perf_counter() - started), self.config.tick_s))

    def run_once(self) -> Decision:
        """One pass: events, lost nodes, then a scheduling decision. Returns the decision."""
        self.executor.refresh()
        for event in self.executor.events():
            self.store.jobs.apply_event(event)
        lost = self._check_lost()
        if lost:
            requeued = [
                j for j in self.store.jobs.on_nodes(lost) if self.store.jobs.requeue(j, "its node was lost")
            ]
            log.warning("node(s) %s lost; %d job(s) requeued", ", ".join(lost), len(requeued))
        self.passes += 1
        state = self.pending_snapshot() if self.incremental else self.snapshot()
        if state is None or not state.jobs or not len(state.cluster):
            return Decision()
        view = view_of(state, oracle=self.scheduler.policy.oracle)
        decision = self.scheduler.step(view, lambda index: state.jobs[index].spec)
        self.executor.flush()
        return decision

    def _check_lost(self) -> list[str]:
        # Once per tick is enough to notice a node silent for lost_after_s (> tick_s); passes woken by
        # every submit and report would otherwise query for it hundreds of times a second.
        now = time.monotonic()
        if now - self._lost_checked_at < self.config.tick_s:
            return []
        self._lost_checked_at = now
        return self.store.nodes.mark_lost(silent_for_s=self.config.lost_after_s)

    def _cache_specs(self, job_ids: list[str]) -> None:
        unseen = [job_id for job_id in job_ids if job_id not in self._specs]
        for start in range(0, len(unseen), 500):
            for record in self.store.jobs.by_ids(unseen[start : start + 500]):
                self._specs[record.id] = record.as_job().spec

    def _cache_placements(self, active: list[tuple[str, int]]) -> None:
        uncached = [job_id for job_id, attempt in active if (job_id, attempt) not in self._placed]
        for start in range(0, len(uncached), 500):
            for key, replicas in self.store.jobs.active_placements(uncached[start : start + 500]).items():
                spec = self._specs[key[0]]
                self._placed[key] = tuple(
                    Placement(node_id=node_id, resources=spec.resources, gpu_indices=gpus)
                    for node_id, gpus in replicas
                )

    def _alive_cluster(self) -> Cluster:
        versions = self.store.nodes.alive_versions()
        if versions != self._nodes_version:
            self._cluster = Cluster(n.as_node() for n in self.store.nodes.find(alive_only=True))
            self._nodes_version = versions
        return self._cluster

    def pending_snapshot(self) -> ClusterState | None:
        """The state a non-preemptive policy needs: what waits, and what is left where. None: nothing waits.

        Such a policy never moves a running job, so CPU-only running jobs are folded into their nodes'
        capacity (one aggregate query) instead of being handed over one by one; jobs holding GPUs are
        handed over with their placements (their devices are named). A pass then costs in proportion to
        the queue, not to everything running (measured: see docs/cluster.md, Benchmark).
        """
        pending = self.store.jobs.queue_view((str(JobStatus.PENDING),))
        if not pending:
            return None
        gpu_active = self.store.jobs.queue_view(ACTIVE, gpu_only=True)
        rows = pending + gpu_active
        self._cache_specs([row[0] for row in rows])
        self._cache_placements([(row[0], row[2]) for row in gpu_active])
        cluster = self._alive_cluster()
        used = self.store.jobs.cpu_usage_by_node()
        nodes = []
        for node in cluster:
            cpu_milli, memory_mib = used.get(node.id, (0, 0))
            cap = node.capacity
            if cpu_milli or memory_mib:
                left = Resources(
                    cpu_milli=max(cap.cpu_milli - cpu_milli, 0),
                    memory_mib=max(cap.memory_mib - memory_mib, 0),
                    gpu_milli=cap.gpu_milli,
                    gpu_type=cap.gpu_type,
                )
                node = replace(node, capacity=left)
            nodes.append(node)
        return self._state(rows, Cluster(nodes))

    def _state(self, rows: list[tuple[str, str, int, int, float | None]], cluster: Cluster) -> ClusterState:
        nodes = {n.id for n in cluster}
        jobs: list[Job] = []
        running: dict[str, tuple[Placement, ...]] = {}
        job_cache: dict[tuple[str, str, int, int, float | None], Job] = {}
        for row in rows:
            job_id, status, attempt = row[0], row[1], row[2]
            if status != "pending":
                placements = self._placed.get((job_id, attempt))
                if not placements or any(p.node_id not in nodes for p in placements):
                    continue  # its node vanished: the lost-node check requeues it
                running[job_id] = placements
            job = self._job_cache.get(row)
            if job is None:
                job = Job(
                    spec=self._specs[job_id], status=JobStatus(status), start_time_s=row[4], restarts=row[3]
                )
            jobs.append(job)
            job_cache[row] = job
        self._job_cache = job_cache
        if len(self._specs) > 2 * len(rows) + 1000:  # forget finished jobs now and then
            live = {row[0] for row in rows}
            self._specs = {k: v for k, v in self._specs.items() if k in live}
            self._placed = {k: v for k, v in self._placed.items() if k[0] in live}
        return ClusterState(
            now_s=self.clock.now_s(), cluster=cluster, jobs=tuple(jobs), running=Allocation(running)
        )

    def snapshot(self) -> ClusterState:
        """The whole `ClusterState` (every unfinished job) a policy decides on, read from the store.

        Job specs never change, so they are read once and cached; each pass reads only the small
        mutable part (status, attempt, restarts) and the current placements.
        """
        queue = self.store.jobs.queue_view()
        self._cache_specs([row[0] for row in queue])
        self._cache_placements([(row[0], row[2]) for row in queue if row[1] != "pending"])
        return self._state(queue, self._alive_cluster())

    def cancel(self, job_id: str) -> None:
        self.store.jobs.cancel(job_id)
        self.executor.release(job_id)
        self.wake()
