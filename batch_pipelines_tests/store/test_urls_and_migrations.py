"""URL forms users paste, and a store that shares its database with Dagster.

The migrations' own tests are in ``test_migrations.py``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.store.batch_store import BatchStore
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


def test_a_pasted_postgres_url_connects(postgres_url):
    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    store = BatchStore(bare)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar_one() == 1
    assert store.dialect == "postgresql"
    store.dispose()


def test_the_store_and_dagster_can_share_one_postgres_database(postgres_url, tmp_path, monkeypatch):
    """Both use alembic; the store keeps its revision in its own table so neither is confused."""
    import shutil
    from pathlib import Path

    import dagster as dg

    BatchStore(postgres_url).dispose()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(
        Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "dagster.yaml",
        home / "dagster.yaml",
    )
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.dispose()
    store = BatchStore(postgres_url)
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    store.dispose()
    assert {
        "batches",
        "jobs",
        "runs",
        "event_logs",
        "batch_pipelines_schema_version",
        "alembic_version",
    } <= tables


def test_passwords_in_the_query_of_a_sql_server_url_are_masked_too():
    from sqlalchemy.engine import make_url

    url = make_url(
        "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BSERVER%3Ddb%3BUID%3Du%3BPWD%3Dhunter2"
    )
    assert "hunter2" not in redacted(url)


def test_resource_reprs_never_show_keys_urls_or_passwords():
    from batch_pipelines.resources import BatchStoreResource, RiskModelerResource, TeamsResource

    text = (
        repr(RiskModelerResource(base_url="https://x.invalid", api_key="SECRETKEY"))
        + repr(TeamsResource(webhook_url="https://hooks.invalid/SECRETHOOK"))
        + repr(BatchStoreResource(database_url="postgresql://u:SECRETPW@h/db"))
    )
    assert "SECRET" not in text
