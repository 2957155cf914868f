"""What the store hands out: plain frozen records of nodes, jobs, replicas, log lines and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyline.core import Job, JobKind, JobSpec, JobStatus, Node, Resources, Tier


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    id: str
    tier: Tier
    address: str
    capacity: Resources
    status: str  # alive | lost
    registered_at: float
    last_heartbeat_at: float
    labels: Mapping[str, str]

    def as_node(self) -> Node:
        return Node(id=self.id, capacity=self.capacity, tier=self.tier, labels=self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": str(self.tier),
            "address": self.address,
            "cpus": self.capacity.cpus,
            "memory_mib": self.capacity.memory_mib,
            "gpus": self.capacity.gpus,
            "gpu_type": self.capacity.gpu_type,
            "status": self.status,
            "registered_at": self.registered_at,
            "last_heartbeat_at": self.last_heartbeat_at,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRecord:
    job_id: str
    attempt: int
    rank: int
    node_id: str
    gpu_indices: tuple[int, ...]
    status: str
    exit_code: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "attempt": self.attempt,
            "node_id": self.node_id,
            "gpu_indices": list(self.gpu_indices),
            "status": self.status,
            "exit_code": self.exit_code,
        }


# Replica reports one heartbeat may carry: a beat's reports are applied in one transaction on the API's
# event loop (a fraction of a millisecond each), so a big backlog goes over several beats.
MAX_REPORTS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReport:
    """What an agent saw one of its replicas do: ``running``, or ended (with its exit code)."""

    job_id: str
    attempt: int
    rank: int
    status: str  # running | succeeded | failed | stopped
    exit_code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    seq: int
    id: str
    name: str
    owner: str
    command: str
    env: Mapping[str, str]
    kind: JobKind
    resources: Resources
    replicas: int
    tiers: frozenset[Tier]
    priority: int
    status: JobStatus
    attempt: int
    restarts: int
    submitted_at: float
    placed_at: float | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    message: str
    master_port: int | None
    idempotency_key: str | None
    job_type: str = ""
    estimate_s: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    service_s: float = 0.0  # running seconds of the finished attempts
    running_since: float | None = None  # start of the running attempt

    def service_at(self, now_s: float) -> float:
        """Seconds it has run, all attempts together, by ``now_s``."""
        running = now_s - self.running_since if self.running_since is not None else 0.0
        return self.service_s + max(running, 0.0)

    def attained_gpu_s(self, now_s: float) -> float:
        """GPU-seconds of service received by ``now_s`` (running time × the gang's GPUs)."""
        return self.service_at(now_s) * self.gpus

    def as_spec(self, *, estimate_s: float | None = None) -> JobSpec:
        """The core `JobSpec` a policy sees: labels carry owner and name (for fair-share policies), the
        duration is the job's own estimate, else ``estimate_s`` (from history)."""
        return JobSpec(
            id=self.id,
            resources=self.resources,
            kind=self.kind,
            replicas=self.replicas,
            priority=self.priority,
            submit_time_s=self.submitted_at,
            duration_s=self.estimate_s or estimate_s,
            tiers=self.tiers,
            job_type=self.job_type,
            labels={**self.labels, "owner": self.owner, "name": self.name},
        )

    def as_job(self, now_s: float | None = None) -> Job:
        """The core `Job`, its attained service as of ``now_s`` (default: its finished attempts')."""
        attained = self.attained_gpu_s(now_s) if now_s is not None else self.service_s * self.gpus
        return Job(
            spec=self.as_spec(),
            status=self.status,
            start_time_s=self.started_at,
            restarts=self.restarts,
            attained_gpu_s=attained,
        )

    @property
    def gpus(self) -> float:
        """GPUs of the whole gang."""
        return self.resources.gpus * self.replicas

    def to_json(
        self, replicas: tuple[ReplicaRecord, ...] = (), *, now_s: float | None = None
    ) -> dict[str, Any]:
        """The API's shape; with ``now_s``, ``service_s`` and ``attained_gpu_s`` count the running attempt."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "command": self.command,
            "kind": str(self.kind),
            "cpus": self.resources.cpus,
            "memory_mib": self.resources.memory_mib,
            "gpus": self.resources.gpus,
            "replicas": self.replicas,
            "tiers": sorted(str(t) for t in self.tiers),
            "priority": self.priority,
            "status": str(self.status),
            "attempt": self.attempt,
            "restarts": self.restarts,
            "submitted_at": self.submitted_at,
            "placed_at": self.placed_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "message": self.message,
            "idempotency_key": self.idempotency_key,
            "gpu_type": self.resources.gpu_type,
            "job_type": self.job_type,
            "estimate_s": self.estimate_s,
            "labels": dict(self.labels),
            "service_s": self.service_at(now_s) if now_s is not None else self.service_s,
            "attained_gpu_s": self.attained_gpu_s(now_s) if now_s is not None else self.service_s * self.gpus,
            "running_since": self.running_since,
            "placement": [r.to_json() for r in replicas],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One replica an agent must be running: what to run and with which environment."""

    job_id: str
    attempt: int
    rank: int
    command: str
    env: Mapping[str, str]

    @property
    def key(self) -> str:
        return f"{self.job_id}/{self.attempt}/{self.rank}"

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "rank": self.rank,
            "command": self.command,
            "env": dict(self.env),
        }
