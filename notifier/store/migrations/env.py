"""Alembic environment: always run from notifier.store.engine with a connection handed over in config.attributes."""

from __future__ import annotations

from alembic import context

from notifier.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `notifier migrate`, which hands Alembic a connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
