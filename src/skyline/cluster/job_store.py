"""`JobStore`: jobs and their replicas; every job transition is one committed transaction.

Job life-cycle rules come from `skyline.core.JobStatus`; the gang rules (a job runs when all its
replicas run, fails when one fails) are applied here, in the transaction that records a report. Each
transition also writes a `job_events` row (a timeline and a change feed) and keeps the job's attained
service: ``running_since`` is set when an attempt starts running, and its running time is added to
``service_s`` when it ends (finished, preempted or lost), so service survives a restart of the server.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.database import Database
from skyline.cluster.job_rows import (
    JobState,
    QueueRow,
    event_row,
    job_from_mapping,
    job_from_row,
    new_job_row,
    replica_from_row,
)
from skyline.cluster.log_store import log_tail
from skyline.cluster.records import JobRecord, ReplicaRecord, ReplicaReport
from skyline.cluster.spec import JobRequest
from skyline.core import JobEvent, JobStatus, Placement
from skyline.errors import ConflictError, NotFoundError, SkylineError

ACTIVE = (str(JobStatus.PLACED), str(JobStatus.RUNNING))
UNFINISHED = (str(JobStatus.PENDING), *ACTIVE)
LIVE_REPLICA = ("assigned", "running")


# Statements of the hot paths (submits, agents' reports), built once with bound parameters: building a
# SQLAlchemy statement per call cost more CPU than SQLite takes to run it.
_r = t.replicas.c
_JOB = sa.select(t.jobs).where(t.jobs.c.id == sa.bindparam("b_id"))
_ATTEMPT_REPLICAS = (
    sa.select(t.replicas)
    .where(_r.job_id == sa.bindparam("b_id"), _r.attempt == sa.bindparam("b_attempt"))
    .order_by(_r.rank)
)
_ONE_REPLICA = (
    _r.job_id == sa.bindparam("b_id"),
    _r.attempt == sa.bindparam("b_attempt"),
    _r.rank == sa.bindparam("b_rank"),
)
# What a replica report needs, in one query instead of three (the replica, its job, its siblings): every
# replica of the attempt (rank, status, node) with the job's current status and attempt.
_REPORT_CONTEXT = (
    sa.select(_r.rank, _r.status, _r.node_id, t.jobs.c.status, t.jobs.c.attempt)
    .join(t.jobs, t.jobs.c.id == _r.job_id)
    .where(_r.job_id == sa.bindparam("b_id"), _r.attempt == sa.bindparam("b_attempt"))
)
_SET_REPLICA = (
    t.replicas.update()
    .where(*_ONE_REPLICA)
    .values(
        status=sa.bindparam("b_status"), exit_code=sa.bindparam("b_exit"), updated_at=sa.bindparam("b_now")
    )
)
_STOP_REPLICAS = (
    t.replicas.update()
    .where(_r.job_id == sa.bindparam("b_id"), _r.status.in_(LIVE_REPLICA))
    .values(status="stopping", updated_at=sa.bindparam("b_now"))
)
# An attempt that stops running adds its running time to the job's service.
_SERVED = t.jobs.c.service_s + sa.func.coalesce(sa.bindparam("b_now") - t.jobs.c.running_since, 0.0)
_FINISH_JOB = (
    t.jobs.update()
    .where(t.jobs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        finished_at=sa.bindparam("b_now"),
        exit_code=sa.bindparam("b_exit"),
        message=sa.bindparam("b_message"),
        service_s=_SERVED,
        running_since=None,
    )
)
_REQUEUE_JOB = (
    t.jobs.update()
    .where(t.jobs.c.id == sa.bindparam("b_id"))
    .values(
        status=str(JobStatus.PENDING),
        attempt=t.jobs.c.attempt + 1,
        restarts=t.jobs.c.restarts + 1,
        placed_at=None,
        message=sa.bindparam("b_message"),
        service_s=_SERVED,
        running_since=None,
    )
)
_EVENT = t.job_events.insert()
# Submits (one or a group commit's): the keys already known, and the insert of the new jobs (several at
# once answer each one's seq); built once: a new Insert per submit cost its cache key every time.
_BY_KEY = sa.select(t.jobs).where(t.jobs.c.idempotency_key == sa.bindparam("b_key"))
_INSERT_JOB = t.jobs.insert()
_BY_KEYS = sa.select(t.jobs).where(t.jobs.c.idempotency_key.in_(sa.bindparam("b_keys", expanding=True)))
_INSERT_JOBS = t.jobs.insert().returning(t.jobs.c.id, t.jobs.c.seq)
_INSERT_REPLICAS = t.replicas.insert()
# The scheduling pass's statements (it runs many times a second under a burst of submissions).
_j = t.jobs.c
_PENDING_OF = sa.select(_j.id, _j.status, _j.attempt).where(_j.id.in_(sa.bindparam("b_ids", expanding=True)))
_PLACE_JOB = (
    t.jobs.update()
    .where(_j.id == sa.bindparam("b_id"))
    .values(
        status=str(JobStatus.PLACED),
        placed_at=sa.bindparam("b_now"),
        master_port=sa.bindparam("b_port"),
        message="",
    )
)
_QUEUE = (
    sa.select(_j.id, _j.status, _j.attempt, _j.restarts, _j.started_at, _j.service_s, _j.running_since)
    .where(_j.status.in_(sa.bindparam("b_statuses", expanding=True)))
    .order_by(_j.seq)
)
_GPU_QUEUE = _QUEUE.where(_j.gpu_milli > 0)
_CPU_USAGE = (
    sa.select(_r.node_id, sa.func.sum(_j.cpu_milli), sa.func.sum(_j.memory_mib))
    .select_from(t.replicas.join(t.jobs, sa.and_(_j.id == _r.job_id, _j.attempt == _r.attempt)))
    .where(_j.status.in_(ACTIVE), _j.gpu_milli == 0)
    .group_by(_r.node_id)
)
_JOBS_BY_ID = sa.select(t.jobs).where(_j.id.in_(sa.bindparam("b_ids", expanding=True)))
_START_JOB = (
    t.jobs.update()
    .where(t.jobs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        started_at=sa.func.coalesce(_j.started_at, sa.bindparam("b_at")),
        running_since=sa.func.coalesce(_j.running_since, sa.bindparam("b_at")),
    )
)
_SET_REASON = (
    t.jobs.update()
    .where(_j.id == sa.bindparam("b_id"), _j.status == str(JobStatus.PENDING))
    .values(message=sa.bindparam("b_message"))
)


# One row takes the single-row statements: their SQLAlchemy overhead is lower than the IN list's and
# RETURNING's (measured: 21 vs 30 µs the lookup, 43 vs 68 µs the insert), which pay off from two rows on.
def _stored_by_key(conn: sa.Connection, keys: Sequence[str]) -> dict[str, JobRecord]:
    """The stored jobs with these idempotency keys, by key."""
    if not keys:
        return {}
    if len(keys) == 1:
        rows = conn.execute(_BY_KEY, {"b_key": keys[0]}).all()
    else:
        rows = conn.execute(_BY_KEYS, {"b_keys": list(keys)}).all()
    return {row.idempotency_key: job_from_row(row) for row in rows}


def _insert_jobs(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new jobs' rows in order (their seq is submit order), setting each row's ``seq``."""
    if len(rows) == 1:
        inserted = conn.execute(_INSERT_JOB, rows[0]).inserted_primary_key
        rows[0]["seq"] = int(inserted[0]) if inserted is not None else 0
        return
    seqs = {row[0]: row[1] for row in conn.execute(_INSERT_JOBS, rows)}
    for values in rows:
        values["seq"] = seqs[values["id"]]


class JobStore:
    """Jobs and their replicas (one row per rank and attempt)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.finished = 0  # jobs this store saw finish (caches of finished jobs' history key on it)

    # ------------------------------------------------------------------ jobs
    def submit(self, request: JobRequest, *, owner: str) -> tuple[JobRecord, bool]:
        """Queue a job; with an idempotency key already seen, return that job and ``False``."""
        return self.submit_many([(request, owner)])[0]

    def submit_many(self, requests: Sequence[tuple[JobRequest, str]]) -> list[tuple[JobRecord, bool]]:
        """`submit` for several (request, owner) pairs in one transaction (a group commit), answers in order.

        One lookup of the keys, one multi-row insert of the jobs and one of their `pending` events: per
        statement SQLAlchemy costs more than SQLite's work per row. A key already stored, or used by an
        earlier request of the same batch, gives that job and ``False``, as repeated `submit` calls would.
        """
        keys = sorted({r.idempotency_key for r, _ in requests if r.idempotency_key is not None})
        with self.db.write() as conn:
            known: dict[str, JobRecord | dict[str, Any]] = dict(_stored_by_key(conn, keys))
            now = self.db.now()
            answers: list[tuple[JobRecord | dict[str, Any], bool]] = []
            new: list[dict[str, Any]] = []
            for request, owner in requests:
                key = request.idempotency_key
                if key is not None and key in known:
                    answers.append((known[key], False))
                    continue
                values = new_job_row(request, owner=owner) | {"submitted_at": now}
                new.append(values)
                answers.append((values, True))
                if key is not None:
                    known[key] = values
            if new:
                _insert_jobs(conn, new)
                conn.execute(_EVENT, [event_row(v["id"], 0, JobStatus.PENDING, now) for v in new])
        return [(job_from_mapping(a) if isinstance(a, dict) else a, created) for a, created in answers]

    def get(self, job_id: str, conn: sa.Connection | None = None) -> JobRecord:
        if conn is None:
            with self.db.read() as own:
                row = own.execute(_JOB, {"b_id": job_id}).first()
        else:
            row = conn.execute(_JOB, {"b_id": job_id}).first()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}; list jobs with 'skyline job list'")
        return job_from_row(row)

    def find(
        self, *, statuses: Sequence[str] = (), owner: str | None = None, limit: int = 1000
    ) -> list[JobRecord]:
        query = sa.select(t.jobs).order_by(t.jobs.c.seq)
        if statuses:
            query = query.where(t.jobs.c.status.in_(list(statuses)))
        if owner is not None:
            query = query.where(t.jobs.c.owner == owner)
        with self.db.read() as conn:
            return [job_from_row(r) for r in conn.execute(query.limit(limit))]

    def replicas(self, job_id: str, attempt: int | None = None) -> tuple[ReplicaRecord, ...]:
        if attempt is not None:
            with self.db.read() as conn:
                rows = conn.execute(_ATTEMPT_REPLICAS, {"b_id": job_id, "b_attempt": attempt})
                return tuple(replica_from_row(r) for r in rows)
        query = sa.select(t.replicas).where(t.replicas.c.job_id == job_id)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(t.replicas.c.attempt, t.replicas.c.rank))
            return tuple(replica_from_row(r) for r in rows)

    def active_placements(
        self, job_ids: Sequence[str] | None = None
    ) -> dict[tuple[str, int], list[tuple[str, tuple[int, ...]]]]:
        """(node id, GPU indices) of each replica, by rank, of placed or running jobs' current attempts.

        ``job_ids`` narrows the query to those jobs (the control plane caches the rest: a placement of
        one attempt never changes).
        """
        r = t.replicas.c
        query = (
            sa.select(r.job_id, r.attempt, r.node_id, r.gpu_indices)
            .join(t.jobs, sa.and_(t.jobs.c.id == r.job_id, t.jobs.c.attempt == r.attempt))
            .where(t.jobs.c.status.in_(ACTIVE))
            .order_by(r.job_id, r.rank)
        )
        if job_ids is not None:
            query = query.where(r.job_id.in_(list(job_ids)))
        out: dict[tuple[str, int], list[tuple[str, tuple[int, ...]]]] = {}
        with self.db.read() as conn:
            for row in conn.execute(query):
                out.setdefault((row[0], row[1]), []).append((row[2], tuple(row[3])))
        return out

    def place(self, job_id: str, placements: Sequence[Placement], *, master_port: int) -> bool:
        """PENDING → PLACED with one replica row per placement, atomically; False if no longer pending."""
        return job_id in self.place_many(
            [(job_id, tuple(placements))], master_port=lambda _j, _a: master_port
        )

    def place_many(
        self,
        gangs: Sequence[tuple[str, tuple[Placement, ...]]],
        *,
        master_port: Callable[[str, int], int],
    ) -> set[str]:
        """Place several gangs in one transaction (one commit per scheduling pass); the ids placed.

        A job no longer pending (cancelled meanwhile) is skipped. Each gang is all its replicas or none.
        ``master_port(job_id, attempt)`` gives its rendezvous port (the attempt is read here, in the same
        transaction, so a retry can get another port).
        """
        if not gangs:
            return set()
        with self.db.write() as conn:
            rows = conn.execute(_PENDING_OF, {"b_ids": [g[0] for g in gangs]})
            attempts = {r[0]: r[2] for r in rows if r[1] == str(JobStatus.PENDING)}
            now = self.db.now()
            replica_rows = []
            job_rows: list[dict[str, Any]] = []
            for job_id, placements in gangs:
                if job_id not in attempts:
                    continue
                replica_rows += [
                    {
                        "job_id": job_id,
                        "attempt": attempts[job_id],
                        "rank": rank,
                        "node_id": p.node_id,
                        "gpu_indices": list(p.gpu_indices),
                        "status": "assigned",
                        "updated_at": now,
                    }
                    for rank, p in enumerate(placements)
                ]
                port = master_port(job_id, attempts[job_id])
                job_rows.append({"b_id": job_id, "b_port": port, "b_now": now})
            if job_rows:
                conn.execute(_INSERT_REPLICAS, replica_rows)
                conn.execute(_PLACE_JOB, job_rows)
                events = [event_row(r["b_id"], attempts[r["b_id"]], JobStatus.PLACED, now) for r in job_rows]
                conn.execute(_EVENT, events)
        return {str(row["b_id"]) for row in job_rows}

    def queue_view(self, statuses: Sequence[str] = UNFINISHED, *, gpu_only: bool = False) -> list[QueueRow]:
        """`QueueRow`s of the jobs in ``statuses``, in submit order.

        Cheap to read (no spec columns); ``gpu_only`` keeps the jobs that ask for GPUs.
        """
        query = _GPU_QUEUE if gpu_only else _QUEUE
        with self.db.read() as conn:
            return [QueueRow(*r) for r in conn.execute(query, {"b_statuses": list(statuses)})]

    def history_estimates(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """Median running time of the succeeded jobs of each (owner, command): a duration estimate for a
        job that gave none (the shortest-first policies rank by it)."""
        wanted = set(keys)
        if not wanted:
            return {}
        query = sa.select(_j.owner, _j.command, _j.service_s).where(
            _j.status == str(JobStatus.SUCCEEDED),
            _j.owner.in_(sorted({k[0] for k in wanted})),
            _j.command.in_(sorted({k[1] for k in wanted})),
            _j.service_s > 0,
        )
        seen: dict[tuple[str, str], list[float]] = {}
        with self.db.read() as conn:
            for owner, command, service_s in conn.execute(query):
                if (owner, command) in wanted:
                    seen.setdefault((owner, command), []).append(float(service_s))
        return {key: statistics.median(values) for key, values in seen.items()}

    def set_wait_reasons(self, reasons: Mapping[str, str]) -> None:
        """Say why each of these pending jobs waits (its ``message``, shown by ``job status``)."""
        if reasons:
            rows = [{"b_id": job_id, "b_message": reason} for job_id, reason in reasons.items()]
            with self.db.write() as conn:
                conn.execute(_SET_REASON, rows)

    def cpu_usage_by_node(self) -> dict[str, tuple[int, int]]:
        """(CPU milli, memory MiB) held on each node by the replicas of placed or running CPU-only jobs.

        One aggregate query: the control plane's incremental pass shrinks node capacities by it instead
        of handing every running job to the policy. (GPU jobs are handed over as they are: their devices
        are named, so a sum would lose which ones are taken.)
        """
        with self.db.read() as conn:
            return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in conn.execute(_CPU_USAGE)}

    def by_ids(self, job_ids: Sequence[str]) -> list[JobRecord]:
        with self.db.read() as conn:
            rows = conn.execute(_JOBS_BY_ID, {"b_ids": list(job_ids)})
            return [job_from_row(r) for r in rows]

    def on_nodes(self, node_ids: Sequence[str]) -> list[str]:
        """Active jobs with a current replica on any of ``node_ids``."""
        query = (
            sa.select(t.replicas.c.job_id)
            .join(
                t.jobs, sa.and_(t.jobs.c.id == t.replicas.c.job_id, t.jobs.c.attempt == t.replicas.c.attempt)
            )
            .where(t.replicas.c.node_id.in_(list(node_ids)), t.jobs.c.status.in_(ACTIVE))
            .distinct()
        )
        with self.db.read() as conn:
            return sorted(r[0] for r in conn.execute(query))

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs in each status."""
        query = sa.select(t.jobs.c.status, sa.func.count()).group_by(t.jobs.c.status)
        with self.db.read() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def _stop_replicas(self, conn: sa.Connection, job_id: str) -> None:
        conn.execute(_STOP_REPLICAS, {"b_id": job_id, "b_now": self.db.now()})

    def _finish(
        self,
        conn: sa.Connection,
        job: JobRecord | JobState,
        status: JobStatus,
        *,
        exit_code: int | None,
        message: str,
    ) -> None:
        if not job.status.can_become(status):
            raise ConflictError(f"job {job.id} is {job.status}; it cannot become {status}")
        self._stop_replicas(conn, job.id)
        now = self.db.now()
        values = {"b_id": job.id, "b_status": str(status), "b_now": now, "b_exit": exit_code}
        conn.execute(_FINISH_JOB, {**values, "b_message": message})
        conn.execute(_EVENT, event_row(job.id, job.attempt, status, now, message))
        self.finished += 1

    def cancel(self, job_id: str) -> JobRecord:
        with self.db.write() as conn:
            job = self.get(job_id, conn)
            if job.status.is_finished():
                raise ConflictError(
                    f"job {job_id} already {job.status}; only unfinished jobs can be cancelled"
                )
            self._finish(conn, job, JobStatus.CANCELLED, exit_code=None, message="cancelled by user")
            return self.get(job_id, conn)

    def requeue(self, job_id: str, reason: str) -> bool:
        """PLACED/RUNNING → PENDING with a new attempt (lost node, preemption); False if not active."""
        with self.db.write() as conn:
            job = self.get(job_id, conn)
            if job.status not in (JobStatus.PLACED, JobStatus.RUNNING):
                return False
            self._stop_replicas(conn, job_id)
            now = self.db.now()
            conn.execute(_REQUEUE_JOB, {"b_id": job_id, "b_message": reason, "b_now": now})
            conn.execute(_EVENT, event_row(job_id, job.attempt + 1, JobStatus.PENDING, now, reason))
        return True

    def apply_event(self, event: JobEvent) -> bool:
        """Apply an executor's event to its job; False when it no longer applies (already done)."""
        if event.status is JobStatus.PENDING:
            return self.requeue(event.job_id, event.message or "lost")
        with self.db.write() as conn:
            job = self.get(event.job_id, conn)
            if job.status is event.status or not job.status.can_become(event.status):
                return False
            if event.status is JobStatus.RUNNING:
                self._start(conn, job, event.at_s)
            else:
                self._finish(conn, job, event.status, exit_code=event.exit_code, message=event.message)
        return True

    def report_replica(
        self, job_id: str, attempt: int, rank: int, status: str, *, exit_code: int | None = None
    ) -> JobEvent | None:
        """Record what an agent saw a replica do; return the job-level event it implies, if any.

        The gang rule: running when every replica runs; failed as soon as one fails (the rest are
        stopped); succeeded when all succeeded.
        """
        report = ReplicaReport(job_id=job_id, attempt=attempt, rank=rank, status=status, exit_code=exit_code)
        with self.db.write() as conn:
            return self._report_in(conn, report)

    def report_replicas(
        self, node_id: str, reports: Sequence[ReplicaReport]
    ) -> list[JobEvent | SkylineError | None]:
        """One node's reports, in order, in one transaction (a heartbeat carries them).

        Per report: the job event it implied, None, or the error refusing it (a `NotFoundError`: no such
        replica on ``node_id``, checked before anything is written); the others still apply.
        """
        outcomes: list[JobEvent | SkylineError | None] = []
        with self.db.write() as conn:
            for report in reports:
                try:
                    outcomes.append(self._report_in(conn, report, node_id=node_id))
                except SkylineError as exc:
                    outcomes.append(exc)
        return outcomes

    def _report_in(
        self, conn: sa.Connection, report: ReplicaReport, *, node_id: str | None = None
    ) -> JobEvent | None:
        key = {"b_id": report.job_id, "b_attempt": report.attempt, "b_rank": report.rank}
        rows = conn.execute(_REPORT_CONTEXT, key).all()
        found = next((r for r in rows if r[0] == report.rank), None)
        if found is None or (node_id is not None and found[2] != node_id):
            where = f" on node {node_id}" if node_id is not None else ""
            raise NotFoundError(
                f"no replica {report.rank} of job {report.job_id} attempt {report.attempt}{where}"
            )
        if found[1] in ("succeeded", "failed", "stopped"):
            return None  # a repeated report (the agent retries until acknowledged)
        values = {**key, "b_status": report.status, "b_exit": report.exit_code, "b_now": self.db.now()}
        conn.execute(_SET_REPLICA, values)
        job = JobState(report.job_id, JobStatus(found[3]), found[4])
        if job.attempt != report.attempt or job.status.is_finished():
            return None
        # The attempt's replica statuses as they are now, this report's included.
        siblings = [report.status if r[0] == report.rank else r[1] for r in rows]
        event = self._gang_event(job, report.status, siblings, report.exit_code)
        if event is not None:
            self._apply_in(conn, job, event)
        return event

    def _gang_event(
        self, job: JobRecord | JobState, status: str, siblings: list[str], exit_code: int | None
    ) -> JobEvent | None:
        now = self.db.now()
        if status == "failed":
            message = f"replica exited with code {exit_code}"
            return JobEvent(
                job_id=job.id, status=JobStatus.FAILED, at_s=now, exit_code=exit_code, message=message
            )
        if status == "succeeded" and all(s == "succeeded" for s in siblings):
            return JobEvent(job_id=job.id, status=JobStatus.SUCCEEDED, at_s=now, exit_code=0)
        if job.status is JobStatus.PLACED and all(s in ("running", "succeeded") for s in siblings):
            return JobEvent(job_id=job.id, status=JobStatus.RUNNING, at_s=now)
        return None

    def _start(self, conn: sa.Connection, job: JobRecord | JobState, at_s: float) -> None:
        """PLACED → RUNNING: the attempt's service counts from ``at_s``."""
        conn.execute(_START_JOB, {"b_id": job.id, "b_status": str(JobStatus.RUNNING), "b_at": at_s})
        conn.execute(_EVENT, event_row(job.id, job.attempt, JobStatus.RUNNING, at_s))

    def _apply_in(self, conn: sa.Connection, job: JobRecord | JobState, event: JobEvent) -> None:
        if event.status is JobStatus.RUNNING:
            self._start(conn, job, event.at_s)
            return
        if event.status is not JobStatus.FAILED and job.status is JobStatus.PLACED:
            # Ended before its running report arrived: it did start (for no measurable time).
            conn.execute(_START_JOB, {"b_id": job.id, "b_status": str(job.status), "b_at": event.at_s})
        message = event.message
        if event.status is JobStatus.FAILED:
            tail = log_tail(conn, job.id, job.attempt, lines=5)
            message = message + ("; last log lines:\n" + "\n".join(tail) if tail else "")
        self._finish(conn, job, event.status, exit_code=event.exit_code, message=message)
