"""Dagster's PostgreSQL storage, configured from a database URL as users paste it.

dagster-postgres hands ``postgres_url`` to SQLAlchemy unchanged: a bare ``postgresql://``
then selects psycopg 3 (not installed: "No module named 'psycopg'") and ``postgres://`` is
not recognised at all, and an unset ``env:`` variable fails the whole instance with a
config traceback. This subclass reads the URL from the environment variable named in
deploy/postgres/dagster.yaml, says in one line when it is unset, and normalises it with the
batch store's own ``normalize_database_url``, so both accept the same URLs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.store.urls import normalize_database_url


def instance_postgres_url(env: Mapping[str, str], variable: str) -> str:
    """The psycopg2 URL for Dagster's storage from ``env[variable]``; a ConfigurationError
    naming ``variable`` (never its value) when it is unset or not a PostgreSQL URL."""
    raw = env.get(variable, "").strip()
    if not raw:
        raise ConfigurationError(
            f"{variable} is not set: the PostgreSQL Dagster instance stores its runs there, "
            "e.g. postgresql://user@host:5432/dagster"
        )
    url = normalize_database_url(raw, what=variable)
    if not url.drivername.startswith("postgresql"):
        raise ConfigurationError(f"{variable}: the Dagster instance needs a postgresql:// URL")
    return url.render_as_string(hide_password=False)


class PostgresInstanceStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose URL comes from the variable ``postgres_url_env``."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "postgres_url_env": dg.Field(str, default_value="DAGSTER_POSTGRES_URL"),
            "should_autocreate_tables": dg.Field(bool, default_value=True),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PostgresInstanceStorage:
        return cls(
            postgres_url=instance_postgres_url(os.environ, config_value["postgres_url_env"]),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
        )
