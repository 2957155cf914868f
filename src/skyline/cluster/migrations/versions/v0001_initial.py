"""Initial schema: nodes, jobs, replicas, job logs, node metrics.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("cpu_milli", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("gpu_milli", sa.Integer, nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("last_heartbeat_at", sa.Float, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
    )
    op.create_table(
        "jobs",
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
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    )
    op.create_table(
        "replicas",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("rank", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.String(128), nullable=False, index=True),
        sa.Column("gpu_indices", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "job_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_job_logs_job_id_id", "job_logs", ["job_id", "id"])
    op.create_table(
        "node_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("memory_percent", sa.Float, nullable=False),
        sa.Column("gpu_percent", sa.Float, nullable=True),
        sa.Column("running_replicas", sa.Integer, nullable=False),
    )
    op.create_index("ix_node_metrics_node_id_at_s", "node_metrics", ["node_id", "at_s"])


def downgrade() -> None:
    for table in ("node_metrics", "job_logs", "replicas", "jobs", "nodes"):
        op.drop_table(table)
