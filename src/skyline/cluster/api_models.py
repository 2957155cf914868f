"""The HTTP boundary's shapes (pydantic): bounded, strict, and turned into skyline records at once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from skyline.cluster.records import MAX_REPORTS, ReplicaReport
from skyline.cluster.spec import MAX_REPLICAS, JobRequest
from skyline.core import JobKind, Resources, Tier


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it at the door instead of failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[str, Field(max_length=255), AfterValidator(_no_nul)]
NodeId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
TierName = Literal["datacenter", "cloud", "edge"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobIn(Strict):
    """A job submission: a shell command run on each of ``replicas`` nodes (a gang)."""

    command: Annotated[str, Field(min_length=1, max_length=65536), AfterValidator(_no_nul)]
    name: Name = ""
    cpus: float = Field(1.0, ge=0, le=4096, allow_inf_nan=False)
    memory_mib: int = Field(256, ge=0, le=2**31 - 1)
    gpus: float = Field(0.0, ge=0, le=64, allow_inf_nan=False)
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    kind: Literal["training", "inference", "batch"] = "batch"
    tiers: list[TierName] = Field(default_factory=list, max_length=3)
    priority: int = Field(0, ge=-1000, le=1000)
    env: dict[
        Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Name
    ] = Field(default_factory=dict, max_length=256)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)] | None = (
        None
    )
    gpu_type: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._|-]+$")] | None = None
    estimate_s: float | None = Field(None, gt=0, le=10 * 365 * 86400, allow_inf_nan=False)
    job_type: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] = ""
    labels: dict[Annotated[str, Field(min_length=1, max_length=63)], Name] = Field(
        default_factory=dict, max_length=32
    )

    def to_request(self, header_key: str | None) -> JobRequest:
        return JobRequest(
            command=self.command,
            name=self.name,
            resources=Resources.of(
                cpus=self.cpus, memory_mib=self.memory_mib, gpus=self.gpus, gpu_type=self.gpu_type
            ),
            replicas=self.replicas,
            kind=JobKind(self.kind),
            tiers=frozenset(Tier(t) for t in self.tiers),
            priority=self.priority,
            env=self.env,
            idempotency_key=self.idempotency_key or header_key,
            estimate_s=self.estimate_s,
            job_type=self.job_type,
            labels=self.labels,
        )


class NodeIn(Strict):
    """A node agent registering (or re-registering) its machine."""

    id: NodeId
    tier: TierName = "datacenter"
    address: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)] = "127.0.0.1"
    cpus: float = Field(gt=0, le=4096, allow_inf_nan=False)
    memory_mib: int = Field(ge=0, le=2**31 - 1)
    gpus: int = Field(0, ge=0, le=64)
    gpu_type: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)] | None = None
    labels: dict[Name, Name] = Field(default_factory=dict, max_length=64)


class ReplicaReportIn(Strict):
    """What happened to one replica on the reporting node."""

    job_id: Annotated[str, Field(min_length=1, max_length=64)]
    attempt: int = Field(ge=0, le=1_000_000)
    rank: int = Field(ge=0, le=MAX_REPLICAS)
    status: Literal["running", "succeeded", "failed", "stopped"]
    exit_code: int | None = Field(None, ge=-255, le=255)

    def to_report(self) -> ReplicaReport:
        return ReplicaReport(
            job_id=self.job_id,
            attempt=self.attempt,
            rank=self.rank,
            status=self.status,
            exit_code=self.exit_code,
        )


class HeartbeatIn(Strict):
    """Utilization sampled on the node since the previous heartbeat (percent of capacity), and what
    happened to its replicas since the last accepted heartbeat, in order (like a kubelet's status)."""

    cpu_percent: float = Field(ge=0, le=100, allow_inf_nan=False)
    memory_percent: float = Field(ge=0, le=100, allow_inf_nan=False)
    gpu_percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    running_replicas: int = Field(0, ge=0, le=100_000)
    replicas: list[ReplicaReportIn] = Field(default_factory=list, max_length=MAX_REPORTS)


class LogsIn(Strict):
    """Log lines of one replica, in order."""

    job_id: Annotated[str, Field(min_length=1, max_length=64)]
    attempt: int = Field(ge=0, le=1_000_000)
    rank: int = Field(ge=0, le=MAX_REPLICAS)
    lines: list[Annotated[str, Field(max_length=16384), AfterValidator(_no_nul)]] = Field(max_length=5000)


class TokenIn(Strict):
    """A new token for ``subject`` with ``role`` (admins only)."""

    subject: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)]
    role: Literal["admin", "operator", "viewer", "agent"]
    ttl_s: float | None = Field(None, gt=0, le=10 * 365 * 86400, allow_inf_nan=False)
