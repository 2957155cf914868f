"""`ControlPlane`: the loop that keeps the world matching the store.

Each pass: apply the executor's events, declare silent nodes lost (requeueing their jobs), then ask the
scheduling policy through `skyline.scheduling.Scheduler`, which starts and stops jobs via the executor.
A pass runs when something changed (a submit, a report, a cancel) and at least every ``tick_s``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from skyline.cluster.node_store import Store
from skyline.core import (
    Allocation,
    Clock,
    Cluster,
    ClusterState,
    Executor,
    JobEvent,
    Placement,
)
from skyline.errors import ConfigError
from skyline.scheduling.policy import Policy
from skyline.scheduling.scheduler import Scheduler

log = logging.getLogger("skyline.cluster")


class ClusterExecutor(Executor, Protocol):
    """An `Executor` the control plane can also notify and release (cancel) and close."""

    name: str

    def notify(self, event: JobEvent) -> None: ...

    def release(self, job_id: str) -> None: ...

    def refresh(self) -> None: ...

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
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

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
            try:
                self.run_once()
            except Exception:  # the loop must survive a bad pass; the next one retries from the store
                log.exception("control-plane pass failed")

    def run_once(self) -> Allocation:
        """One pass: events, lost nodes, then a scheduling decision. Returns the allocation."""
        self.executor.refresh()
        for event in self.executor.events():
            self.store.apply_event(event)
        lost = self.store.mark_lost(silent_for_s=self.config.lost_after_s)
        if lost:
            for job_id in self.store.jobs_on_nodes(lost):
                if self.store.requeue(job_id, f"node(s) {', '.join(lost)} lost"):
                    log.warning("job %s requeued: node(s) %s lost", job_id, ", ".join(lost))
        self.passes += 1
        state = self.snapshot()
        if not state.jobs or not len(state.cluster):
            return Allocation()
        return self.scheduler.step(state)

    def snapshot(self) -> ClusterState:
        """The `ClusterState` a policy decides on, read from the store."""
        records = self.store.unfinished_jobs()
        by_id = {r.id: r for r in records}
        placed = self.store.active_placements()
        nodes = {n.id: n for n in self.store.nodes(alive_only=True)}
        running: dict[str, tuple[Placement, ...]] = {}
        for job_id, replicas in placed.items():
            record = by_id.get(job_id)
            if record is None or any(r.node_id not in nodes for r in replicas):
                continue  # a node vanished under it: the lost-node check requeues it
            running[job_id] = tuple(
                Placement(node_id=r.node_id, resources=record.resources, gpu_indices=r.gpu_indices)
                for r in replicas
            )
        # A placed job whose replicas are not all visible is left out of the state until requeued.
        jobs = tuple(r.as_job() for r in records if r.id in running or r.status.value == "pending")
        return ClusterState(
            now_s=self.clock.now_s(),
            cluster=Cluster(n.as_node() for n in nodes.values()),
            jobs=jobs,
            running=Allocation(running),
        )

    def cancel(self, job_id: str) -> None:
        self.store.cancel(job_id)
        self.executor.release(job_id)
        self.wake()
