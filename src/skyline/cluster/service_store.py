"""`ServiceStore`: services, their replicas, their telemetry history and the autoscaler's decisions.

Composed into `skyline.cluster.store.Store` as ``store.services``, over the same `Database` (write lock,
clock) as the job and node stores. A service's replicas are jobs (kind ``service``) in the job store;
``service_replicas`` says which service and generation each belongs to, its port, and where the
controller has it: ``starting`` → ``ready`` (probed) → ``draining`` → ``retired``; ``exited`` when it
ended on its own (the controller restarts it with backoff).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.database import Database
from skyline.cluster.service_spec import ServiceSpec, service_from_mapping
from skyline.cluster.service_telemetry import TelemetryWindow
from skyline.errors import ConflictError, NotFoundError

LIVE = ("starting", "ready", "draining")

services = sa.Table(
    "services",
    t.metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),  # +1 per update: replicas roll to it
    sa.Column("desired", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | deleting
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),  # replicas that exited in a row (backoff)
    sa.Column("next_start_at", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)
service_replicas = sa.Table(
    "service_replicas",
    t.metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("service_id", sa.String(64), nullable=False, index=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("ready_at", sa.Float, nullable=True),
    sa.Column("retired_at", sa.Float, nullable=True),
)
service_metrics = sa.Table(
    "service_metrics",
    t.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("at_s", sa.Float, nullable=False),
    sa.Column("window_s", sa.Float, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),  # arrived: the demand
    sa.Column("answered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("within_slo", sa.Integer, nullable=True),
    sa.Column("p50_ms", sa.Float, nullable=True),
    sa.Column("p90_ms", sa.Float, nullable=True),
    sa.Column("p99_ms", sa.Float, nullable=True),
    sa.Column("mean_ms", sa.Float, nullable=True),
    sa.Column("concurrency", sa.Float, nullable=False),
    sa.Column("peak_concurrency", sa.Integer, nullable=False),
    sa.Column("queued", sa.Integer, nullable=False),
    sa.Column("ready_replicas", sa.Integer, nullable=False),
    sa.Column("desired_replicas", sa.Integer, nullable=False),
    sa.Column("replica_outstanding", sa.JSON, nullable=False),
    sa.Index("ix_service_metrics_service_id_at_s", "service_id", "at_s"),
)
service_decisions = sa.Table(
    "service_decisions",
    t.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("at_s", sa.Float, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("observed", sa.Float, nullable=False),  # requests in the step just ended
    sa.Column("forecast", sa.Float, nullable=True),  # P90 of requests per step, highest over the lead
    sa.Column("predictive", sa.Integer, nullable=True),
    sa.Column("reactive", sa.Integer, nullable=True),
    sa.Column("current", sa.Integer, nullable=False),
    sa.Column("target", sa.Integer, nullable=False),
    sa.Column("lead_s", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_service_decisions_service_id_id", "service_id", "id"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRecord:
    """A service as stored: what was asked (``spec``, ``desired``) and where it stands."""

    id: str
    name: str
    owner: str
    spec: ServiceSpec
    generation: int
    desired: int
    status: str
    created_at: float
    updated_at: float
    failures: int
    next_start_at: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "owner": self.owner, "generation": self.generation,
            "desired": self.desired, "status": self.status, "created_at": self.created_at,
            "updated_at": self.updated_at, "failures": self.failures, "message": self.message,
            "spec": self.spec.to_json(),
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaView:
    """One replica as the controller sees it: its row, its job's status and where it runs (if placed)."""

    job_id: str
    service_id: str
    generation: int
    port: int
    state: str
    created_at: float
    ready_at: float | None
    job_status: str
    attempt: int
    node_id: str | None
    address: str | None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _service(row: Any) -> ServiceRecord:
    m = row._mapping
    return ServiceRecord(
        id=m["id"], name=m["name"], owner=m["owner"], spec=service_from_mapping(m["spec"]),
        generation=m["generation"], desired=m["desired"], status=m["status"], created_at=m["created_at"],
        updated_at=m["updated_at"], failures=m["failures"], next_start_at=m["next_start_at"],
        message=m["message"],
    )  # fmt: skip


_s, _r = services.c, service_replicas.c
# One row per replica: its job's status and attempt, and the node of its (single) current replica row.
_REPLICAS = (
    sa.select(
        service_replicas,
        t.jobs.c.status.label("job_status"),
        t.jobs.c.attempt,
        t.replicas.c.node_id,
        t.nodes.c.address,
    )
    .join(t.jobs, t.jobs.c.id == _r.job_id)
    .outerjoin(
        t.replicas,
        sa.and_(
            t.replicas.c.job_id == _r.job_id, t.replicas.c.attempt == t.jobs.c.attempt, t.replicas.c.rank == 0
        ),
    )
    .outerjoin(t.nodes, t.nodes.c.id == t.replicas.c.node_id)
    .where(_r.state.in_(LIVE))
    .order_by(_r.created_at)
)


class ServiceStore:
    """Services, replicas, telemetry and decisions over ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ services
    def create(self, spec: ServiceSpec, *, owner: str) -> ServiceRecord:
        """A new service (generation 1, ``spec.replicas`` wanted); 409 when the name is taken."""
        now = self.db.now()
        values = {
            "id": "s-" + uuid.uuid4().hex[:12], "name": spec.name, "owner": owner, "spec": spec.to_json(),
            "generation": 1, "desired": spec.replicas, "status": "active", "created_at": now,
            "updated_at": now, "failures": 0, "next_start_at": 0.0, "message": "",
        }  # fmt: skip
        with self.db.write() as conn:
            if conn.execute(sa.select(_s.id).where(_s.name == spec.name)).first() is not None:
                raise ConflictError(
                    f"a service named {spec.name!r} exists; update it ('skyline service update') or delete it"
                )
            conn.execute(services.insert(), values)
        return self.get(spec.name)

    def get(self, name: str) -> ServiceRecord:
        with self.db.read() as conn:
            row = conn.execute(sa.select(services).where(_s.name == name)).first()
        if row is None:
            raise NotFoundError(f"no service {name!r}; list them with 'skyline service list'")
        return _service(row)

    def find(self, *, owner: str | None = None) -> list[ServiceRecord]:
        query = sa.select(services).order_by(_s.created_at)
        if owner is not None:
            query = query.where(_s.owner == owner)
        with self.db.read() as conn:
            return [_service(r) for r in conn.execute(query)]

    def update(self, name: str, spec: ServiceSpec, *, roll: bool) -> ServiceRecord:
        """Store a changed spec; ``roll``: the replica template changed, so bump the generation."""
        current = self.get(name)
        if current.status != "active":
            raise ConflictError(f"service {name!r} is being deleted; it cannot be changed")
        desired = min(max(current.desired, spec.min_replicas), spec.max_replicas)
        values = {"spec": spec.to_json(), "desired": desired, "updated_at": self.db.now(), "message": ""}
        if roll:
            values |= {"generation": current.generation + 1, "failures": 0, "next_start_at": 0.0}
        with self.db.write() as conn:
            conn.execute(services.update().where(_s.id == current.id).values(**values))
        return self.get(name)

    def set_desired(self, service_id: str, desired: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                services.update().where(_s.id == service_id).values(desired=desired, updated_at=self.db.now())
            )

    def set_backoff(self, service_id: str, *, failures: int, next_start_at: float, message: str) -> None:
        with self.db.write() as conn:
            query = services.update().where(_s.id == service_id)
            conn.execute(query.values(failures=failures, next_start_at=next_start_at, message=message))

    def mark_deleting(self, name: str) -> ServiceRecord:
        record = self.get(name)
        with self.db.write() as conn:
            conn.execute(
                services.update()
                .where(_s.id == record.id)
                .values(status="deleting", updated_at=self.db.now())
            )
        return self.get(name)

    def purge(self, service_id: str) -> None:
        """Forget a deleted service whose replicas are all retired (its jobs stay in the job history)."""
        with self.db.write() as conn:
            for table in (service_decisions, service_metrics, service_replicas):
                conn.execute(table.delete().where(table.c.service_id == service_id))
            conn.execute(services.delete().where(_s.id == service_id))

    # ------------------------------------------------------------------ replicas
    def replicas(self, service_id: str | None = None) -> list[ReplicaView]:
        """Live replicas (starting, ready, draining) of one service, or of every service."""
        query = _REPLICAS if service_id is None else _REPLICAS.where(_r.service_id == service_id)
        with self.db.read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return [ReplicaView(**{k: v for k, v in row.items() if k != "retired_at"}) for row in rows]

    def add_replica(self, service_id: str, job_id: str, *, generation: int, port: int) -> None:
        row = {"job_id": job_id, "service_id": service_id, "generation": generation, "port": port,
               "state": "starting", "created_at": self.db.now(), "ready_at": None, "retired_at": None}  # fmt: skip
        with self.db.write() as conn:
            conn.execute(service_replicas.insert(), row)

    def set_replica_state(self, job_id: str, state: str) -> None:
        now = self.db.now()
        values: dict[str, Any] = {"state": state}
        if state == "ready":  # the first time only: start-up lead times are measured from it
            values["ready_at"] = sa.func.coalesce(_r.ready_at, now)
        elif state in ("retired", "exited"):
            values["retired_at"] = now
        with self.db.write() as conn:
            conn.execute(service_replicas.update().where(_r.job_id == job_id).values(**values))

    def orphan_jobs(self) -> list[str]:
        """Unfinished service-kind jobs that no replica row names (the process died between the two)."""
        query = sa.select(t.jobs.c.id).where(
            t.jobs.c.kind == "service",
            t.jobs.c.status.in_(("pending", "placed", "running")),
            t.jobs.c.id.not_in(sa.select(_r.job_id)),
        )
        with self.db.read() as conn:
            return [row[0] for row in conn.execute(query)]

    def startup_times(self, service_id: str, *, last: int = 10) -> list[float]:
        """Seconds from creation to first ready of the service's ``last`` replicas that became ready."""
        query = (
            sa.select(_r.ready_at - _r.created_at)
            .where(_r.service_id == service_id, _r.ready_at.is_not(None))
            .order_by(_r.created_at.desc())
            .limit(last)
        )
        with self.db.read() as conn:
            return [float(row[0]) for row in conn.execute(query)]

    def ports_in_use(self) -> set[int]:
        with self.db.read() as conn:
            return {row[0] for row in conn.execute(sa.select(_r.port).where(_r.state.in_(LIVE)))}

    def replica_seconds(self, service_id: str, *, since_s: float, until_s: float) -> float:
        """Replica-seconds held in [since_s, until_s]: each replica from its creation to its retirement."""
        query = sa.select(_r.created_at, _r.retired_at).where(_r.service_id == service_id)
        with self.db.read() as conn:
            spans = [(float(a), until_s if b is None else float(b)) for a, b in conn.execute(query)]
        return float(sum(max(min(b, until_s) - max(a, since_s), 0.0) for a, b in spans))

    # ------------------------------------------------------------------ telemetry and decisions
    def add_metrics(self, rows: Sequence[tuple[str, TelemetryWindow, int, int]]) -> None:
        """Windows as (service id, window, ready replicas, desired replicas), in one transaction."""
        if not rows:
            return
        values = []
        for service_id, w, ready, desired in rows:
            row = w.to_json()
            for key in ("service", "rate_rps"):
                row.pop(key)
            values.append(
                row | {"service_id": service_id, "ready_replicas": ready, "desired_replicas": desired}
            )
        with self.db.write() as conn:
            conn.execute(service_metrics.insert(), values)

    def metrics(
        self, service_id: str, *, since_s: float = 0.0, until_s: float | None = None, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Telemetry windows ending after ``since_s`` (and by ``until_s``), oldest first."""
        c = service_metrics.c
        query = sa.select(service_metrics).where(c.service_id == service_id, c.at_s > since_s)
        if until_s is not None:
            query = query.where(c.at_s <= until_s)
        query = query.order_by(c.at_s).limit(limit)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def prune_metrics(self, *, before_s: float) -> None:
        with self.db.write() as conn:
            conn.execute(service_metrics.delete().where(service_metrics.c.at_s < before_s))

    def add_decision(self, service_id: str, **fields: Any) -> None:
        with self.db.write() as conn:
            conn.execute(
                service_decisions.insert(), {"service_id": service_id, "at_s": self.db.now(), **fields}
            )

    def decisions(self, service_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The autoscaler's last ``limit`` decisions, oldest first, each with its inputs."""
        c = service_decisions.c
        query = (
            sa.select(service_decisions).where(c.service_id == service_id).order_by(c.id.desc()).limit(limit)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)][::-1]
