"""Alembic environment: always run programmatically with a connection handed in.

``batch_pipelines.store.database.migrate`` passes the connection through
``config.attributes["connection"]``, so no alembic.ini or URL lives on disk.
"""

from __future__ import annotations

from alembic import context

from batch_pipelines.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
