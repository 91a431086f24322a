"""Alembic environment: bootgate runs migrations itself (``Store.open``) on a connection it passes in
``config.attributes["connection"]``; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from bootgate.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only bootgate's own runner is supported
    raise RuntimeError("run migrations through bootgate.store.migrate (Store.open does it)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
