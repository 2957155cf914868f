"""Desired vs observed state of work: `JobSpec` (what was asked) and `Job` (what is happening)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from skyline.core.node import Tier
from skyline.core.resources import Resources
from skyline.errors import ConfigError, ConflictError


class JobKind(enum.StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"
    BATCH = "batch"
    SERVICE = "service"  # one replica of a long-running service (skyline.cluster.services owns it)


class JobStatus(enum.StrEnum):
    """Life cycle: PENDING → PLACED → RUNNING → SUCCEEDED | FAILED | CANCELLED.

    A preempted or lost job goes back to PENDING (its ``restarts`` grows), never to a finished state.
    """

    PENDING = "pending"
    PLACED = "placed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_finished(self) -> bool:
        return self in _FINISHED

    def can_become(self, new: JobStatus) -> bool:
        return new in _TRANSITIONS[self]


_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PLACED, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PLACED: frozenset(
        {JobStatus.RUNNING, JobStatus.PENDING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a user asked for. Immutable: a change of mind is a new job.

    ``resources`` is per replica; ``replicas`` is the gang size (all replicas start together or none).
    ``duration_s`` is an estimate or, in a simulation, the truth (only oracle policies may read it).
    ``tiers`` restricts where replicas may run (empty: anywhere). ``job_type`` keys per-model speeds
    (Gavel throughputs); ``labels`` carries the rest (user, virtual cluster, ...).
    """

    id: str
    resources: Resources
    kind: JobKind = JobKind.TRAINING
    replicas: int = 1
    priority: int = 0
    submit_time_s: float = 0.0
    duration_s: float | None = None
    tiers: frozenset[Tier] = frozenset()
    job_type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ConfigError(f"JobSpec.id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.kind, JobKind):
            raise ConfigError(f"job {self.id}: kind must be a JobKind, got {self.kind!r}")
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"job {self.id}: replicas must be a whole number >= 1, got {self.replicas!r}")
        if not math.isfinite(self.submit_time_s) or self.submit_time_s < 0:
            raise ConfigError(
                f"job {self.id}: submit_time_s must be finite and >= 0, got {self.submit_time_s}"
            )
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"job {self.id}: duration_s must be > 0 when given, got {self.duration_s}")
        if self.resources.is_zero():
            raise ConfigError(f"job {self.id}: a replica must ask for some CPU, memory or GPU")
        object.__setattr__(self, "tiers", frozenset(self.tiers))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def total_resources(self) -> Resources:
        """What the whole gang takes."""
        return self.resources * self.replicas

    def allows(self, tier: Tier) -> bool:
        return not self.tiers or tier in self.tiers


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """What is happening to a `JobSpec`. Transitions return a new `Job` and check the life cycle.

    ``attained_gpu_s`` is GPU-seconds of service received so far (what Tiresias' LAS ranks by).
    """

    spec: JobSpec
    status: JobStatus = JobStatus.PENDING
    start_time_s: float | None = None
    finish_time_s: float | None = None
    attained_gpu_s: float = 0.0
    restarts: int = 0
    exit_code: int | None = None
    message: str = ""

    @property
    def id(self) -> str:
        return self.spec.id

    def transition(
        self, status: JobStatus, *, at_s: float, exit_code: int | None = None, message: str = ""
    ) -> Job:
        """The job in its new status at time ``at_s``; raises `ConflictError` on an illegal move."""
        if not self.status.can_become(status):
            raise ConflictError(f"job {self.id} cannot go from {self.status} to {status}")
        changes: dict[str, object] = {"status": status, "message": message}
        if status is JobStatus.RUNNING and self.start_time_s is None:
            changes["start_time_s"] = at_s
        if status is JobStatus.PENDING:  # preempted or lost: it will start again
            changes["restarts"] = self.restarts + 1
        if status.is_finished():
            changes["finish_time_s"] = at_s
            changes["exit_code"] = exit_code
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def jct_s(self) -> float | None:
        """Job completion time: finish minus submit, once finished."""
        if self.finish_time_s is None:
            return None
        return self.finish_time_s - self.spec.submit_time_s
