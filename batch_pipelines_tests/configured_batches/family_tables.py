"""Test helper: empty the family's tables (the PostgreSQL test database lives for the
whole session, so a test that reads "every change" must start from empty tables)."""

import sqlalchemy as sa

from batch_pipelines.store.configured_batches_tables import TABLES


def empty_family_tables(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        for table in reversed(TABLES):
            conn.execute(table.delete())
    return engine
