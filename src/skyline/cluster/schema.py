"""The control plane's tables (SQLAlchemy Core). Alembic migrations create them; this is the map.

Times are wall-clock seconds since the epoch (float). Resources are integers in milli-units, as in
`skyline.core.Resources`. A job's replicas are keyed by ``(job_id, attempt, rank)``: a requeued job gets
a new attempt, so late reports from a lost node's old replicas can never touch the new ones.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("cpu_milli", sa.Integer, nullable=False),
    sa.Column("memory_mib", sa.Integer, nullable=False),
    sa.Column("gpu_milli", sa.Integer, nullable=False),
    sa.Column("gpu_type", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # alive | lost
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("last_heartbeat_at", sa.Float, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    # ``seq`` orders the queue (submit order); ``id`` is what users see.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("env", sa.JSON, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("cpu_milli", sa.Integer, nullable=False),
    sa.Column("memory_mib", sa.Integer, nullable=False),
    sa.Column("gpu_milli", sa.Integer, nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("tiers", sa.JSON, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("placed_at", sa.Float, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("master_port", sa.Integer, nullable=True),
    # A client retrying a submit sends the same key; the second insert finds the first job.
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("gpu_type", sa.String(255), nullable=True),  # allowed GPU models, "A|B"; None: any
    sa.Column("job_type", sa.String(64), nullable=False, server_default=""),  # throughput-matrix key
    sa.Column("estimate_s", sa.Float, nullable=True),  # the user's duration estimate
    sa.Column("labels", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
    # Attained service: running seconds of the finished attempts, and since when the current one runs.
    sa.Column("service_s", sa.Float, nullable=False, server_default="0"),
    sa.Column("running_since", sa.Float, nullable=True),
    sa.Index("ix_jobs_status_seq", "status", "seq"),
    sa.Index("ix_jobs_owner_seq", "owner", "seq"),
)

# One row per job transition, written in the transaction that makes it: a job's timeline, and a change
# feed (``id`` grows) that a console can follow without asking every job.
job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at_s", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_job_events_job_id_id", "job_id", "id"),
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("node_id", sa.String(128), nullable=False, index=True),
    sa.Column("gpu_indices", sa.JSON, nullable=False),
    # assigned → running → succeeded | failed; stopping → stopped (cancel, preemption, lost node)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("at_s", sa.Float, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Index("ix_job_logs_job_id_id", "job_id", "id"),
)

node_metrics = sa.Table(
    "node_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node_id", sa.String(128), nullable=False),
    sa.Column("at_s", sa.Float, nullable=False),
    sa.Column("cpu_percent", sa.Float, nullable=False),
    sa.Column("memory_percent", sa.Float, nullable=False),
    sa.Column("gpu_percent", sa.Float, nullable=True),
    sa.Column("running_replicas", sa.Integer, nullable=False),
    sa.Index("ix_node_metrics_node_id_at_s", "node_id", "at_s"),
)
