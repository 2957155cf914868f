"""`NodeStore`: nodes, their heartbeats, their utilization history and the replicas each must run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.database import Database
from skyline.cluster.records import Assignment, NodeRecord
from skyline.core import Resources, Tier
from skyline.errors import NotFoundError


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageSample:
    """Utilization an agent measured (psutil, NVML): percentages of the node's capacity."""

    cpu_percent: float
    memory_percent: float
    gpu_percent: float | None = None
    running_replicas: int = 0


# Statements of the agents' hot paths (a heartbeat per node per second), built once with bound
# parameters: building a SQLAlchemy statement costs more CPU than SQLite takes to run it.
_BEAT = (
    t.nodes.update()
    .where(t.nodes.c.id == sa.bindparam("b_node"), t.nodes.c.status == "alive")
    .values(last_heartbeat_at=sa.bindparam("b_now"))
)
_SAMPLE = t.node_metrics.insert()
_n = t.nodes.c
_ALIVE_VERSIONS = (
    sa.select(_n.id, _n.tier, _n.cpu_milli, _n.memory_mib, _n.gpu_milli, _n.gpu_type)
    .where(_n.status == "alive")
    .order_by(_n.id)
)


_ASSIGNMENTS = (
    sa.select(
        t.replicas, t.jobs.c.command, t.jobs.c.env, t.jobs.c.replicas.label("world"), t.jobs.c.master_port
    )
    .join(t.jobs, sa.and_(t.jobs.c.id == t.replicas.c.job_id, t.jobs.c.attempt == t.replicas.c.attempt))
    .where(
        t.replicas.c.node_id == sa.bindparam("b_node"),
        t.replicas.c.status.in_(("assigned", "running")),
        t.jobs.c.status.in_(("placed", "running")),
    )
)
_MASTERS = (
    sa.select(t.replicas.c.job_id, t.replicas.c.attempt, t.nodes.c.address)
    .join(t.nodes, t.nodes.c.id == t.replicas.c.node_id)
    .where(t.replicas.c.rank == 0, t.replicas.c.job_id.in_(sa.bindparam("b_jobs", expanding=True)))
)


def node_from_row(row: Any) -> NodeRecord:
    m = row._mapping
    return NodeRecord(
        id=m["id"],
        tier=Tier(m["tier"]),
        address=m["address"],
        capacity=Resources(
            cpu_milli=m["cpu_milli"],
            memory_mib=m["memory_mib"],
            gpu_milli=m["gpu_milli"],
            gpu_type=m["gpu_type"],
        ),
        status=m["status"],
        registered_at=m["registered_at"],
        last_heartbeat_at=m["last_heartbeat_at"],
        labels=m["labels"],
    )


class NodeStore:
    """The nodes agents registered: alive or lost, their capacity, heartbeats and samples."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.generation = 0  # grows with every registration through this store (caches key on it)

    def register(
        self, node_id: str, *, tier: Tier, address: str, capacity: Resources, labels: dict[str, str]
    ) -> NodeRecord:
        """Add a node, or bring a known one back alive with its (possibly new) capacity."""
        now = self.db.now()
        values = {
            "tier": str(tier),
            "address": address,
            "cpu_milli": capacity.cpu_milli,
            "memory_mib": capacity.memory_mib,
            "gpu_milli": capacity.gpu_milli,
            "gpu_type": capacity.gpu_type,
            "status": "alive",
            "last_heartbeat_at": now,
            "labels": labels,
        }
        with self.db.write() as conn:
            found = conn.execute(sa.select(t.nodes.c.id).where(t.nodes.c.id == node_id)).first()
            if found is None:
                conn.execute(t.nodes.insert().values(id=node_id, registered_at=now, **values))
            else:
                conn.execute(t.nodes.update().where(t.nodes.c.id == node_id).values(**values))
        self.generation += 1
        return self.get(node_id)

    def get(self, node_id: str) -> NodeRecord:
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.nodes).where(t.nodes.c.id == node_id)).first()
        if row is None:
            raise NotFoundError(f"no node {node_id!r}; list nodes with 'skyline node list'")
        return node_from_row(row)

    def find(self, *, alive_only: bool = False) -> list[NodeRecord]:
        query = sa.select(t.nodes).order_by(t.nodes.c.id)
        if alive_only:
            query = query.where(t.nodes.c.status == "alive")
        with self.db.read() as conn:
            return [node_from_row(r) for r in conn.execute(query)]

    def alive_versions(self) -> tuple[tuple[Any, ...], ...]:
        """Id, tier and capacity of every alive node: changes exactly when the usable nodes do."""
        with self.db.read() as conn:
            return tuple(tuple(r) for r in conn.execute(_ALIVE_VERSIONS))

    def touch(self, node_id: str) -> bool:
        """Mark the node heard from, without a sample; False when unknown or declared lost."""
        with self.db.write() as conn:
            return bool(conn.execute(_BEAT, {"b_node": node_id, "b_now": self.db.now()}).rowcount == 1)

    def heartbeat(self, node_id: str, sample: UsageSample) -> bool:
        """Record a heartbeat and its sample; False when the node is unknown or was declared lost."""
        now = self.db.now()
        with self.db.write() as conn:
            # One statement checks and refreshes: no row updated means unknown or declared lost.
            if conn.execute(_BEAT, {"b_node": node_id, "b_now": now}).rowcount != 1:
                return False
            conn.execute(
                _SAMPLE,
                {
                    "node_id": node_id,
                    "at_s": now,
                    "cpu_percent": sample.cpu_percent,
                    "memory_percent": sample.memory_percent,
                    "gpu_percent": sample.gpu_percent,
                    "running_replicas": sample.running_replicas,
                },
            )
        return True

    def mark_lost(self, *, silent_for_s: float) -> list[str]:
        """Declare lost every alive node silent for longer than ``silent_for_s``; return their ids."""
        cutoff = self.db.now() - silent_for_s
        silent = sa.select(t.nodes.c.id).where(
            t.nodes.c.status == "alive", t.nodes.c.last_heartbeat_at < cutoff
        )
        with self.db.read() as conn:  # the common case, nobody silent, takes no write lock
            if conn.execute(silent.limit(1)).first() is None:
                return []
        with self.db.write() as conn:
            lost = [
                r[0]
                for r in conn.execute(
                    sa.select(t.nodes.c.id).where(
                        t.nodes.c.status == "alive", t.nodes.c.last_heartbeat_at < cutoff
                    )
                )
            ]
            if lost:
                conn.execute(t.nodes.update().where(t.nodes.c.id.in_(lost)).values(status="lost"))
        return lost

    def assignments(self, node_id: str) -> list[Assignment]:
        """Replicas ``node_id`` must be running now (torch's environment set); it stops any others."""
        with self.db.read() as conn:
            rows = [r._mapping for r in conn.execute(_ASSIGNMENTS, {"b_node": node_id})]
            keys = {(r["job_id"], r["attempt"]) for r in rows}
            masters = {}
            if keys:
                found = conn.execute(_MASTERS, {"b_jobs": sorted({k[0] for k in keys})})
                masters = {(r[0], r[1]): r[2] for r in found}
        return [_assignment(r, masters.get((r["job_id"], r["attempt"]), "127.0.0.1")) for r in rows]

    # ------------------------------------------------------------------ metrics
    def metrics(self, node_id: str, *, since_s: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """The node's utilization history, oldest first."""
        self.get(node_id)
        query = (
            sa.select(t.node_metrics)
            .where(t.node_metrics.c.node_id == node_id, t.node_metrics.c.at_s >= since_s)
            .order_by(t.node_metrics.c.at_s.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row.pop("id", None)
        return rows[::-1]

    def latest_metrics(self) -> dict[str, dict[str, Any]]:
        """The newest sample of every node (for the Prometheus endpoint)."""
        newest = (
            sa.select(t.node_metrics.c.node_id, sa.func.max(t.node_metrics.c.id).label("id"))
            .group_by(t.node_metrics.c.node_id)
            .subquery()
        )
        query = sa.select(t.node_metrics).join(newest, newest.c.id == t.node_metrics.c.id)
        with self.db.read() as conn:
            return {r._mapping["node_id"]: dict(r._mapping) for r in conn.execute(query)}

    def refresh_heartbeats(self) -> None:
        """Treat every alive node as just heard from (after a server restart, before agents beat again)."""
        with self.db.write() as conn:
            conn.execute(
                t.nodes.update().where(t.nodes.c.status == "alive").values(last_heartbeat_at=self.db.now())
            )


def _assignment(row: Any, master_addr: str) -> Assignment:
    """One replica to run, with RANK, WORLD_SIZE, MASTER_ADDR/PORT and its GPUs (CUDA_VISIBLE_DEVICES)."""
    gpus = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, row["gpu_indices"]))} if row["gpu_indices"] else {}
    return Assignment(
        job_id=row["job_id"],
        attempt=row["attempt"],
        rank=row["rank"],
        command=row["command"],
        env={
            **row["env"],
            "SKYLINE_JOB_ID": row["job_id"],
            "RANK": str(row["rank"]),
            "LOCAL_RANK": "0",
            "WORLD_SIZE": str(row["world"]),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(row["master_port"]),
            **gpus,
        },
    )
