"""Both shipped dagster.yaml files load as real Dagster instances (SQLite and PostgreSQL)."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from batch_pipelines_tests.conftest import new_postgres_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_postgres_url(postgres_url):
    """A database of its own for Dagster's tables: the session's database is the store
    tests', whose schema comparison must not meet Dagster's own ``jobs`` table."""
    with new_postgres_database(postgres_url, "bp_dagster") as url:
        yield url


def _load(home: Path, source: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def test_the_embedded_instance_queues_runs_with_tag_limits_and_retries(tmp_path):
    instance = _load(tmp_path / "home", ROOT / "deploy" / "embedded" / "dagster.yaml")
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # Runs that died are retried; a failed step is not (it retried its transient faults
        # itself, and a user's error is final).
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {
            "key": "batch_pipelines/concurrency_group",
            "value": "role_onboarding",
            "limit": 10,  # seed 000's max concurrent workflows (activities: a pool of 5)
        } in limits
        assert "sqlite" in type(instance.run_storage).__name__.lower()
    finally:
        instance.dispose()


def test_the_postgres_instance_stores_runs_in_postgres(tmp_path, monkeypatch, dagster_postgres_url):
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL", dagster_postgres_url
    )  # the documented postgresql+psycopg2:// form
    instance = _load(tmp_path / "home", ROOT / "deploy" / "postgres" / "dagster.yaml")
    try:
        assert "postgres" in type(instance.run_storage).__name__.lower()
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()


@pytest.mark.parametrize(
    "pasted",
    [
        "postgresql://u:secret@db:5432/dagster",
        "postgres://u:secret@db:5432/dagster",
        "postgresql+psycopg2://u:secret@db:5432/dagster",
    ],
)
def test_the_instance_takes_postgres_urls_as_pasted_with_psycopg2(pasted):
    from batch_pipelines.instance_storage import instance_postgres_url

    url = instance_postgres_url({"DAGSTER_POSTGRES_URL": pasted}, "DAGSTER_POSTGRES_URL")
    assert url == "postgresql+psycopg2://u:secret@db:5432/dagster"


def test_an_unset_instance_url_is_one_error_naming_the_variable_not_a_config_traceback(
    tmp_path, monkeypatch
):
    from batch_pipelines.core.errors import ConfigurationError

    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    with pytest.raises(
        ConfigurationError, match=r"^\[BP-CONFIG\] DAGSTER_POSTGRES_URL is not set"
    ) as caught:
        _load(tmp_path / "home", ROOT / "deploy" / "postgres" / "dagster.yaml")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
def test_the_postgres_instance_loads_from_a_bare_url(
    tmp_path, monkeypatch, dagster_postgres_url, scheme
):
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL", dagster_postgres_url.replace("postgresql+psycopg2://", scheme)
    )
    instance = _load(tmp_path / "home", ROOT / "deploy" / "postgres" / "dagster.yaml")
    try:
        assert instance.get_runs_count() == 0
    finally:
        instance.dispose()
