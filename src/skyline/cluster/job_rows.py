"""A job's and a replica's rows: the row of a new job, its event rows, and the records read back.

`JobStore` writes and reads them; kept apart so the store's module holds its statements and transitions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from skyline.cluster.records import JobRecord, ReplicaRecord
from skyline.cluster.spec import JobRequest
from skyline.core import JobKind, JobStatus, Resources, Tier


class JobState(NamedTuple):
    """What a transition needs of a job: its id, status and current attempt (a `JobRecord` has them too;
    a replica report reads only these, not the whole row)."""

    id: str
    status: JobStatus
    attempt: int


class QueueRow(NamedTuple):
    """The mutable part of an unfinished job, as a scheduling pass reads it (no spec columns)."""

    id: str
    status: str
    attempt: int
    restarts: int
    started_at: float | None
    service_s: float
    running_since: float | None


def job_from_row(row: Any) -> JobRecord:
    return job_from_mapping(row._mapping)


def job_from_mapping(m: Mapping[str, Any]) -> JobRecord:
    """A `JobRecord` from a jobs row's columns."""
    return JobRecord(
        seq=m["seq"],
        id=m["id"],
        name=m["name"],
        owner=m["owner"],
        command=m["command"],
        env=m["env"],
        kind=JobKind(m["kind"]),
        resources=Resources(
            cpu_milli=m["cpu_milli"],
            memory_mib=m["memory_mib"],
            gpu_milli=m["gpu_milli"],
            gpu_type=m["gpu_type"],
        ),
        replicas=m["replicas"],
        tiers=frozenset(Tier(x) for x in m["tiers"]),
        priority=m["priority"],
        status=JobStatus(m["status"]),
        attempt=m["attempt"],
        restarts=m["restarts"],
        submitted_at=m["submitted_at"],
        placed_at=m["placed_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        exit_code=m["exit_code"],
        message=m["message"],
        master_port=m["master_port"],
        idempotency_key=m["idempotency_key"],
        job_type=m["job_type"],
        estimate_s=m["estimate_s"],
        labels=m["labels"] or {},
        service_s=m["service_s"],
        running_since=m["running_since"],
    )


def new_job_row(request: JobRequest, *, owner: str) -> dict[str, Any]:
    """A new job's row (pending, attempt 0), but its submit time and sequence number."""
    job_id = "j-" + uuid.uuid4().hex[:12]
    res = request.resources
    unset = ("placed_at", "started_at", "finished_at", "exit_code", "master_port", "running_since")
    return {
        "id": job_id, "name": request.name or job_id, "owner": owner, "command": request.command,
        "env": dict(request.env), "kind": str(request.kind), "cpu_milli": res.cpu_milli,
        "memory_mib": res.memory_mib, "gpu_milli": res.gpu_milli, "gpu_type": res.gpu_type,
        "replicas": request.replicas, "tiers": sorted(str(x) for x in request.tiers),
        "priority": request.priority, "status": str(JobStatus.PENDING), "attempt": 0, "restarts": 0,
        "message": "", "idempotency_key": request.idempotency_key, "job_type": request.job_type,
        "estimate_s": request.estimate_s, "labels": dict(request.labels), "service_s": 0.0,
        **dict.fromkeys(unset),
    }  # fmt: skip


def event_row(
    job_id: str, attempt: int, status: JobStatus | str, at_s: float, message: str = ""
) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": attempt, "status": str(status), "at_s": at_s, "message": message}


def replica_from_row(row: Any) -> ReplicaRecord:
    m = row._mapping
    return ReplicaRecord(
        job_id=m["job_id"],
        attempt=m["attempt"],
        rank=m["rank"],
        node_id=m["node_id"],
        gpu_indices=tuple(m["gpu_indices"]),
        status=m["status"],
        exit_code=m["exit_code"],
    )
