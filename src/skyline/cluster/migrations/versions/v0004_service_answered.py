"""Service telemetry: ``answered`` beside ``requests`` (which counts arrivals: the demand).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_metrics") as batch:
        batch.add_column(sa.Column("answered", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("service_metrics") as batch:
        batch.drop_column("answered")
