"""The store's migrations: safe to run over a database with rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext

from batch_pipelines.store import database
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.schema import VERSION_TABLE, metadata


def _upgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(database._alembic_config(conn), revision)


def test_an_sqlite_upgrade_leaves_foreign_keys_enforced(tmp_path):
    """The upgrade turns SQLite's enforcement off to copy tables; connections the store
    uses afterwards must have it back on."""
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    metadata.tables["batch_events"]
                    .insert()
                    .values(
                        batch_id=404,
                        level="INFO",
                        message="no such batch",
                        created_at=datetime.now(UTC),
                    )
                )
    finally:
        store.dispose()


def test_an_sqlite_upgrade_that_would_leave_rows_pointing_nowhere_changes_nothing(tmp_path):
    """A row whose reference is broken is found before the upgrade commits: the upgrade is
    refused with a StoreError naming the table, and the database stays at its revision."""
    from batch_pipelines.core.errors import StoreError

    engine = database.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        _upgrade(engine, "0001")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.execute(
                metadata.tables["batch_events"]
                .insert()
                .values(batch_id=404, level="INFO", message="orphan", created_at=datetime.now(UTC))
            )
            conn.commit()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        with pytest.raises(StoreError, match="batch_events"):
            database.migrate(engine)
        with engine.connect() as conn:
            revision = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
            tables = set(sa.inspect(conn).get_table_names())
        assert revision == "0001"
        assert not any(name.startswith("_alembic_tmp") for name in tables)
    finally:
        engine.dispose()
