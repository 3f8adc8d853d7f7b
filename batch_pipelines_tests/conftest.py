"""Shared fixtures: a store on SQLite and on PostgreSQL; a Dagster instance of the tests' own.

PostgreSQL tests get a fresh database per test session (created here, dropped after). When
the server cannot be reached they are skipped on a laptop but FAIL under CI=true, so CI can
never go green without having run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "BATCH_PIPELINES_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session", autouse=True)
def tests_own_dagster_home(tmp_path_factory) -> Iterator[str]:
    """Point DAGSTER_HOME at a temporary copy of the embedded instance for the whole session.

    `make test` exports DAGSTER_HOME as the project's .dagster_home, and the CLI falls back
    to it: tests that run commands through the CLI would record runs, partitions and
    materializations in the developer's instance. Tests that need another DAGSTER_HOME (or
    none) still monkeypatch it themselves."""
    from batch_pipelines.instance import prepare_home

    home = tmp_path_factory.mktemp("dagster_home")
    prepare_home(home, "embedded", os.environ, replace=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        yield str(home)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bp_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        _postgres_unavailable(type(exc).__name__)
    url = (
        sa.engine.make_url(POSTGRES_ADMIN_URL)
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """A store URL for each backend: a new SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url):
    from batch_pipelines.store.batch_store import BatchStore

    s = BatchStore(database_url)
    yield s
    s.dispose()


@contextmanager
def new_postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the test server (its URL), dropped afterwards with every
    connection still open to it: for tests that must not meet the session's schema."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
