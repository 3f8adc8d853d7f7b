"""Alembic environment: always run programmatically with a connection handed in.

``batch_pipelines.store.database.migrate`` passes the connection through
``config.attributes["connection"]``, so no alembic.ini or URL lives on disk.

``target_metadata`` is there for autogenerate only (drafting the next revision against a
database at the current head); migrations themselves never read the models.
"""

from __future__ import annotations

from alembic import context

from batch_pipelines.store.schema import VERSION_TABLE, UTCDateTime, metadata


def _render_item(type_, obj, autogen_context):
    """Drafts spell the store's UTC timestamps as the plain column type they are in the
    database, so a migration never imports ``schema`` (the template imports ``sa``)."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
