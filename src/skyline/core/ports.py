"""The ports between the scheduler and the world: a `Clock` and an `Executor`.

The simulator passes a simulated clock and executor; the live control plane a wall clock and a real
executor (local processes, Ray). The scheduler cannot tell them apart: no ``simulate=True`` anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from skyline.core.allocation import Placement
from skyline.core.job import JobSpec, JobStatus
from skyline.errors import ConfigError


@runtime_checkable
class Clock(Protocol):
    """Tells the time. Simulated clocks jump from event to event; wall clocks follow ``time.time``."""

    def now_s(self) -> float:
        """Current time in seconds (on this clock's own epoch)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """Something an executor saw happen to a job: it started running, or it ended (with ``status``)."""

    job_id: str
    status: JobStatus
    at_s: float
    exit_code: int | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in (JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PENDING):
            raise ConfigError(
                f"an executor reports running, succeeded, failed or pending (lost), not {self.status}"
            )


@runtime_checkable
class Executor(Protocol):
    """Runs the replicas of jobs where the scheduler placed them."""

    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        """Start every replica of ``spec``, one per placement (a gang starts whole)."""
        ...

    def stop(self, job_id: str) -> None:
        """Stop a job's replicas (preemption or cancellation); its resources are free on return."""
        ...

    def events(self) -> Sequence[JobEvent]:
        """Events since the previous call, oldest first (each reported exactly once)."""
        ...
