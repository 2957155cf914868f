"""Services: services, service_replicas, service_metrics (telemetry history), service_decisions (autoscaler).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("desired", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_start_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "service_replicas",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False, index=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ready_at", sa.Float, nullable=True),
        sa.Column("retired_at", sa.Float, nullable=True),
    )
    op.create_table(
        "service_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
        sa.Column("window_s", sa.Float, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
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
    )
    op.create_index("ix_service_metrics_service_id_at_s", "service_metrics", ["service_id", "at_s"])
    op.create_table(
        "service_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("observed", sa.Float, nullable=False),
        sa.Column("forecast", sa.Float, nullable=True),
        sa.Column("predictive", sa.Integer, nullable=True),
        sa.Column("reactive", sa.Integer, nullable=True),
        sa.Column("current", sa.Integer, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("lead_s", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_service_decisions_service_id_id", "service_decisions", ["service_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_service_decisions_service_id_id", "service_decisions")
    op.drop_table("service_decisions")
    op.drop_index("ix_service_metrics_service_id_at_s", "service_metrics")
    op.drop_table("service_metrics")
    op.drop_table("service_replicas")
    op.drop_table("services")
