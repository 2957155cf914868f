"""Live scheduling state of jobs and their event history.

jobs: ``gpu_type`` (allowed GPU models, "A|B"), ``job_type`` (throughput-matrix key), ``estimate_s`` (the
user's duration estimate), ``labels``, ``service_s`` (running seconds of the finished attempts) and
``running_since`` (start of the running attempt): attained service survives a restart of the server.
job_events: one row per job transition, written in the transaction that makes it (a timeline and a
change feed). Indexes for paging by status and by owner.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gpu_type", sa.String(255), nullable=True))
        batch.add_column(sa.Column("job_type", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("estimate_s", sa.Float, nullable=True))
        batch.add_column(sa.Column("labels", sa.JSON, nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("service_s", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("running_since", sa.Float, nullable=True))
    op.create_index("ix_jobs_status_seq", "jobs", ["status", "seq"])
    op.create_index("ix_jobs_owner_seq", "jobs", ["owner", "seq"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at_s", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_table("job_events")
    op.drop_index("ix_jobs_owner_seq", table_name="jobs")
    op.drop_index("ix_jobs_status_seq", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("running_since", "service_s", "labels", "estimate_s", "job_type", "gpu_type"):
            batch.drop_column(column)
