"""`AgentExecutor`: the `Executor` whose replicas run as processes under node agents.

Starting a job records its replicas in the store; each agent learns its share from the answer to its next
heartbeat and reports back. Nothing lives only in memory, so a restarted server finds everything again.

``MASTER_PORT`` is `PortRange.pick` of the job and its attempt, from the configured range: the same
answer on every host and after a restart, a new port for each retry, no round trip to the node. Rank 0
checks the port on its node before it starts (`skyline.cluster.replica_process`).
"""

from __future__ import annotations

from collections.abc import Sequence

from skyline.cluster.store import Store
from skyline.core import JobEvent, JobSpec, Placement
from skyline.core.net import PortRange


class AgentExecutor:
    """Runs replicas through node agents; job-level events come from their reports."""

    name = "local"

    def __init__(self, store: Store, *, master_ports: PortRange | None = None) -> None:
        self.store = store
        self.master_ports = master_ports or PortRange()
        self._starts: list[tuple[str, tuple[Placement, ...]]] = []

    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        # Collected and written by `flush` in one transaction at the end of the scheduling pass.
        self._starts.append((spec.id, tuple(placements)))

    def flush(self) -> None:
        """Record every start of this pass at once (one commit, however many jobs were placed)."""
        starts, self._starts = self._starts, []
        if starts:
            self.store.jobs.place_many(starts, master_port=self.master_ports.pick)

    def stop(self, job_id: str) -> None:
        # Preemption: the job goes back to the queue; its agents stop the replicas on their next beat.
        self.store.jobs.requeue(job_id, "preempted by the scheduling policy")

    def release(self, job_id: str) -> None:
        """A cancelled job's replicas: the store already tells their agents to stop them."""

    def refresh(self) -> None:
        """Nothing to poll: agents heartbeat into the store themselves."""

    def notify(self, event: JobEvent) -> None:
        """An event the store derived from an agent's report: already applied there, so not queued
        (applying it again in the next pass cost a write transaction per event for nothing)."""

    def events(self) -> Sequence[JobEvent]:
        return ()

    def close(self) -> None:
        """Nothing to release: the agents own the processes."""
