"""Alembic environment: always run on a connection handed in by `gengate.store.migrate`."""

from __future__ import annotations

from alembic import context

from gengate.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Several processes may start at once; one migrates, the others wait.
        context.execute("SELECT pg_advisory_xact_lock(7245601)")
    context.run_migrations()
