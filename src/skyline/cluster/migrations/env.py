"""Alembic environment: runs the migrations on the connection `skyline.cluster.store` hands over."""

from __future__ import annotations

from alembic import context

from skyline.cluster.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand with a URL in the config
    from sqlalchemy import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
