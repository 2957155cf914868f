"""Helpers for scheduling tests: a fixed clock, a recording executor, small states and traces."""

from __future__ import annotations

from collections.abc import Sequence

from skyline.core import (
    Allocation,
    Cluster,
    ClusterState,
    Job,
    JobEvent,
    JobSpec,
    Placement,
    Resources,
)
from skyline.simulation.trace import Trace, TraceJob


class FixedClock:
    """A clock that says what it is told."""

    def __init__(self, now_s: float = 0.0) -> None:
        self.t = now_s

    def now_s(self) -> float:
        return self.t


class RecordingExecutor:
    """An executor that only records what it was asked (for tests of the scheduler's diffing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        assert len(placements) == spec.replicas
        self.calls.append(("start", spec.id))

    def stop(self, job_id: str) -> None:
        self.calls.append(("stop", job_id))

    def events(self) -> Sequence[JobEvent]:
        return ()


def gang(job_id: str, gpus: int, *, submit_s: float = 0.0, duration_s: float = 100.0) -> Job:
    """A pending job of ``gpus`` one-GPU replicas."""
    return Job(
        spec=JobSpec(
            id=job_id,
            resources=Resources.of(gpus=1),
            replicas=gpus,
            submit_time_s=submit_s,
            duration_s=duration_s,
        )
    )


def state_of(
    nodes: int, gpus_per_node: int, jobs: Sequence[Job], running: Allocation | None = None, now_s: float = 0.0
) -> ClusterState:
    return ClusterState(
        now_s=now_s,
        cluster=Cluster.uniform(nodes, Resources.of(gpus=gpus_per_node)),
        jobs=tuple(jobs),
        running=running or Allocation(),
    )


def trace_of(rows: Sequence[tuple[float, float, int]], *, gpu_milli: int = 1000, job_type: str = "") -> Trace:
    """A trace from (submit_s, duration_s, replicas) rows; ids are j0, j1, ... in row order."""
    return Trace(
        name="test",
        jobs=tuple(
            TraceJob(id=f"j{k}", submit_s=s, duration_s=d, replicas=r, gpu_milli=gpu_milli, job_type=job_type)
            for k, (s, d, r) in enumerate(rows)
        ),
    )
