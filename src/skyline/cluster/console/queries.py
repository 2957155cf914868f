"""The console's read-only queries over the control plane's tables (`skyline.cluster.schema`).

The pages need views the API does not serve (a filtered page of jobs with its total, a node's replicas,
utilization by tier); each is one or two indexed statements. The jobs table pages by keyset on ``seq``
(newest first): a page costs the same at job 10 as at job 10,000.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.core import JobStatus, Tier
from skyline.errors import NotFoundError

STATUSES = tuple(s.value for s in JobStatus)
TIERS = tuple(x.value for x in Tier)
ACTIVE = (JobStatus.PLACED.value, JobStatus.RUNNING.value)
LIVE_REPLICA = ("assigned", "running")
_j, _r, _n, _m = t.jobs.c, t.replicas.c, t.nodes.c, t.node_metrics.c
MAX_ROW_ID = 2**63 - 1  # SQL's BIGINT: a larger number cannot even be bound to a statement


def row_id(raw: str | None) -> int | None:
    """A keyset or event id from a query string or header, None when it is not one: ASCII digits only
    (``"²".isdigit()`` is true, yet not a number ``int`` reads) and within SQL's 64-bit integers."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= MAX_ROW_ID else None


# What the jobs table shows: never ``env`` (it may hold secrets) nor the idempotency key.
_ROW = (
    _j.seq, _j.id, _j.name, _j.owner, _j.kind, _j.status, _j.replicas, _j.cpu_milli, _j.memory_mib,
    _j.gpu_milli, _j.tiers, _j.restarts, _j.submitted_at, _j.finished_at, _j.exit_code,
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a table shows: by status, owner and tier, a page of ``limit`` rows around a cursor.

    ``before``: rows older than this ``seq`` (the next page); ``after``: rows newer (the previous one).
    A job matches a tier when it asked for it or one of its replicas ran on a node of that tier.
    """

    status: str | None = None
    owner: str | None = None
    tier: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 50

    def conditions(self) -> list[Any]:
        where: list[Any] = []
        if self.status:
            where.append(_j.status == self.status)
        if self.owner:
            where.append(_j.owner == self.owner)
        if self.tier:
            on_tier = (
                sa.select(_r.job_id)
                .join(t.nodes, _n.id == _r.node_id)
                .where(_n.tier == self.tier)
                .scalar_subquery()
            )
            asked = sa.cast(_j.tiers, sa.Text).like(f'%"{self.tier}"%')
            where.append(sa.or_(asked, _j.id.in_(on_tier)))
        return where


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    rows: list[dict[str, Any]]
    total: int
    newer: int | None  # cursor of the previous page (``after=``), None on the first
    older: int | None  # cursor of the next page (``before=``), None on the last


def job_page(conn: sa.Connection, query: JobFilter) -> JobPage:
    """One page of jobs, newest first, with the total that matches and cursors to either side."""
    where = query.conditions()
    select = sa.select(*_ROW).where(*where)
    if query.after is not None:
        found = conn.execute(select.where(_j.seq > query.after).order_by(_j.seq).limit(query.limit + 1))
        rows = [dict(r._mapping) for r in found]
        more_newer, rows = len(rows) > query.limit, rows[: query.limit][::-1]
        more_older = True
    else:
        if query.before is not None:
            select = select.where(_j.seq < query.before)
        found = conn.execute(select.order_by(_j.seq.desc()).limit(query.limit + 1))
        rows = [dict(r._mapping) for r in found]
        more_older, rows = len(rows) > query.limit, rows[: query.limit]
        more_newer = query.before is not None
    total = conn.execute(sa.select(sa.func.count()).select_from(t.jobs).where(*where)).scalar_one()
    _attach_nodes(conn, rows)
    return JobPage(
        rows=rows,
        total=int(total),
        newer=rows[0]["seq"] if rows and more_newer else None,
        older=rows[-1]["seq"] if rows and more_older else None,
    )


def _attach_nodes(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Each row gets ``nodes``: where its current attempt's replicas are (one query for the page)."""
    if not rows:
        return
    query = (
        sa.select(_r.job_id, _r.node_id)
        .join(t.jobs, sa.and_(_j.id == _r.job_id, _j.attempt == _r.attempt))
        .where(_r.job_id.in_([r["id"] for r in rows]))
        .order_by(_r.job_id, _r.rank)
    )
    where: dict[str, list[str]] = {}
    for job_id, node_id in conn.execute(query):
        where.setdefault(job_id, []).append(node_id)
    for row in rows:
        row["nodes"] = where.get(row["id"], [])


def job_counts(conn: sa.Connection, *, owner: str | None = None) -> dict[str, int]:
    """Jobs in each status (every status present, zeros included)."""
    query = sa.select(_j.status, sa.func.count()).group_by(_j.status)
    if owner is not None:
        query = query.where(_j.owner == owner)
    found = {status: int(n) for status, n in conn.execute(query)}
    return {s: found.get(s, 0) for s in STATUSES}


def job_detail(conn: sa.Connection, job_id: str) -> dict[str, Any]:
    """A job (never its ``env``), every replica of every attempt with its node's tier and state."""
    row = conn.execute(sa.select(*_ROW, *_DETAIL).where(_j.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"no job {job_id!r}; the jobs page lists them")
    job = dict(row._mapping)
    replicas = conn.execute(
        sa.select(_r.attempt, _r.rank, _r.node_id, _r.gpu_indices, _r.status, _r.exit_code, _r.updated_at)
        .add_columns(_n.tier.label("node_tier"), _n.status.label("node_status"))
        .outerjoin(t.nodes, _n.id == _r.node_id)
        .where(_r.job_id == job_id)
        .order_by(_r.attempt.desc(), _r.rank)
    )
    job["replica_rows"] = [dict(r._mapping) for r in replicas]
    return job


_DETAIL = (_j.command, _j.attempt, _j.priority, _j.placed_at, _j.started_at, _j.message)


def log_tail(conn: sa.Connection, job_id: str, *, lines: int = 200) -> list[dict[str, Any]]:
    """The last ``lines`` log lines of a job (every replica and attempt), oldest first, with their ids."""
    query = (
        sa.select(t.job_logs.c.id, t.job_logs.c.attempt, t.job_logs.c.rank, t.job_logs.c.line)
        .where(t.job_logs.c.job_id == job_id)
        .order_by(t.job_logs.c.id.desc())
        .limit(lines)
    )
    return [dict(r._mapping) for r in conn.execute(query)][::-1]


def logs_after(conn: sa.Connection, job_id: str, after_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    """Log lines of a job newer than line id ``after_id``, oldest first (a follower's next batch)."""
    query = (
        sa.select(t.job_logs.c.id, t.job_logs.c.attempt, t.job_logs.c.rank, t.job_logs.c.line)
        .where(t.job_logs.c.job_id == job_id, t.job_logs.c.id > after_id)
        .order_by(t.job_logs.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def job_status(conn: sa.Connection, job_id: str) -> str | None:
    return conn.execute(sa.select(_j.status).where(_j.id == job_id)).scalar_one_or_none()


def job_owner(conn: sa.Connection, job_id: str) -> str:
    owner = conn.execute(sa.select(_j.owner).where(_j.id == job_id)).scalar_one_or_none()
    if owner is None:
        raise NotFoundError(f"no job {job_id!r}; the jobs page lists them")
    return str(owner)


def timeline(conn: sa.Connection, job_id: str) -> list[dict[str, Any]]:
    """Every state the job went through, oldest first: status, attempt, when, why (requeues say why)."""
    e = t.job_events.c
    query = sa.select(e.id, e.attempt, e.status, e.at_s, e.message).where(e.job_id == job_id).order_by(e.id)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    for before, after in itertools.pairwise(rows):
        before["lasted_s"] = after["at_s"] - before["at_s"]
    return rows


# ---------------------------------------------------------------------- nodes
def nodes(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every node with its newest utilization sample and the number of live replicas on it."""
    found = [dict(r._mapping) for r in conn.execute(sa.select(t.nodes).order_by(_n.tier, _n.id))]
    live: dict[str, int] = dict(
        conn.execute(
            sa.select(_r.node_id, sa.func.count())
            .join(t.jobs, sa.and_(_j.id == _r.job_id, _j.attempt == _r.attempt))
            .where(_r.status.in_(LIVE_REPLICA), _j.status.in_(ACTIVE))
            .group_by(_r.node_id)
        ).all()
    )
    latest = latest_samples(conn, [n["id"] for n in found])
    for node in found:
        node["replicas_live"] = int(live.get(node["id"], 0))
        node["sample"] = latest.get(node["id"])
    return found


_LATEST = (
    sa.select(_m.at_s, _m.cpu_percent, _m.memory_percent, _m.gpu_percent, _m.running_replicas)
    .where(_m.node_id == sa.bindparam("b_node"))
    .order_by(_m.at_s.desc())
    .limit(1)
)


def latest_samples(conn: sa.Connection, node_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The newest sample of each node: one index seek per node, whatever the history's length."""
    out = {}
    for node_id in node_ids:
        row = conn.execute(_LATEST, {"b_node": node_id}).first()
        if row is not None:
            out[node_id] = dict(row._mapping)
    return out


def node_detail(conn: sa.Connection, node_id: str) -> dict[str, Any]:
    row = conn.execute(sa.select(t.nodes).where(_n.id == node_id)).first()
    if row is None:
        raise NotFoundError(f"no node {node_id!r}; the nodes page lists them")
    node = dict(row._mapping)
    replicas = conn.execute(
        sa.select(_r.job_id, _r.attempt, _r.rank, _r.gpu_indices, _r.status, _j.name, _j.owner)
        .join(t.jobs, sa.and_(_j.id == _r.job_id, _j.attempt == _r.attempt))
        .where(_r.node_id == node_id, _r.status.in_(LIVE_REPLICA), _j.status.in_(ACTIVE))
        .order_by(_r.job_id, _r.rank)
    )
    node["replica_rows"] = [dict(r._mapping) for r in replicas]
    return node


def node_history(
    conn: sa.Connection, node_id: str, *, since_s: float, max_points: int = 600
) -> list[dict[str, Any]]:
    """A node's samples since ``since_s``, oldest first, thinned evenly to at most ``max_points``."""
    query = (
        sa.select(_m.at_s, _m.cpu_percent, _m.memory_percent, _m.gpu_percent)
        .where(_m.node_id == node_id, _m.at_s >= since_s)
        .order_by(_m.at_s)
    )
    rows = [dict(r._mapping) for r in conn.execute(query)]
    step = max(1, -(-len(rows) // max_points))
    return rows[::step]


def tier_history(conn: sa.Connection, *, since_s: float, bucket_s: float) -> dict[str, list[dict[str, Any]]]:
    """Mean utilization of each tier's nodes per ``bucket_s`` since ``since_s`` (index seeks per node)."""
    node_tiers = dict(conn.execute(sa.select(_n.id, _n.tier)).all())
    if not node_tiers:
        return {}
    bucket = sa.cast(_m.at_s / bucket_s, sa.Integer)
    query = (
        sa.select(
            _n.tier,
            bucket.label("b"),
            sa.func.avg(_m.cpu_percent),
            sa.func.avg(_m.memory_percent),
            sa.func.avg(_m.gpu_percent),
        )
        .join(t.nodes, _n.id == _m.node_id)
        .where(_m.node_id.in_(list(node_tiers)), _m.at_s >= since_s)
        .group_by(_n.tier, bucket)
        .order_by(_n.tier, bucket)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for tier, b, cpu, memory, gpu in conn.execute(query):
        out.setdefault(tier, []).append(
            {"at_s": (b + 1) * bucket_s, "cpu_percent": cpu, "memory_percent": memory, "gpu_percent": gpu}
        )
    return out


def waiting_queue(conn: sa.Connection, *, limit: int = 200) -> list[dict[str, Any]]:
    """Pending jobs in queue order (submit order) with what they ask for and why they wait."""
    query = (
        sa.select(*_ROW, _j.priority, _j.message)
        .where(_j.status == JobStatus.PENDING.value)
        .order_by(_j.seq)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]
