"""URL forms users paste, and migrations that match the schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.schema import metadata
from batch_pipelines.store.urls import normalize_database_url, redacted


@pytest.mark.parametrize(
    "pasted",
    [
        "postgresql://u:secret@db:5432/bp",
        "postgres://u:secret@db:5432/bp",
        "postgresql+psycopg2://u:secret@db:5432/bp",
    ],
)
def test_postgres_urls_as_pasted_all_use_psycopg2(pasted):
    url = normalize_database_url(pasted)
    assert url.drivername == "postgresql+psycopg2"
    assert url.database == "bp" and url.host == "db"
    assert "secret" not in redacted(url)


def test_an_empty_url_means_the_embedded_sqlite_file():
    assert normalize_database_url("").drivername == "sqlite"
    assert normalize_database_url(None).database.endswith("batch_pipelines.db")


def test_an_unsupported_url_is_a_clear_configuration_error_without_the_password():
    with pytest.raises(ConfigurationError) as err:
        normalize_database_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(err.value)


def test_migrations_match_the_schema(database_url):
    store = BatchStore(database_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.dispose()
    assert diff == []


def test_a_pasted_postgres_url_connects(postgres_url):
    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    store = BatchStore(bare)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar_one() == 1
    assert store.dialect == "postgresql"
    store.dispose()
