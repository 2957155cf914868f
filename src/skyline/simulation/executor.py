"""`SimClock` and `SimExecutor`: the simulated side of the `Clock` and `Executor` ports."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from skyline.core import JobEvent, JobSpec, JobStatus, Placement


class SimClock:
    """A clock the simulator moves from event to event."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.t = start_s

    def now_s(self) -> float:
        return self.t


class SimExecutor:
    """Starts and stops jobs in simulated time: it tells the simulator, which owns the job timelines."""

    def __init__(
        self,
        clock: SimClock,
        on_start: Callable[[JobSpec, Sequence[Placement]], None],
        on_stop: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self._on_start = on_start
        self._on_stop = on_stop
        self._events: list[JobEvent] = []

    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        self._on_start(spec, placements)
        self._events.append(JobEvent(job_id=spec.id, status=JobStatus.RUNNING, at_s=self._clock.now_s()))

    def stop(self, job_id: str) -> None:
        self._on_stop(job_id)

    def finished(self, job_id: str) -> None:
        """Called by the simulator when a job's work is done."""
        self._events.append(JobEvent(job_id=job_id, status=JobStatus.SUCCEEDED, at_s=self._clock.now_s()))

    def events(self) -> Sequence[JobEvent]:
        out, self._events = self._events, []
        return out
