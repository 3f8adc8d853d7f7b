"""Both shipped dagster.yaml files load as real Dagster instances (SQLite and PostgreSQL)."""

import shutil
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[2]


def _load(home: Path, source: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def test_the_embedded_instance_queues_runs_with_tag_limits_and_retries(tmp_path):
    instance = _load(tmp_path / "home", ROOT / "deploy" / "embedded" / "dagster.yaml")
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {
            "key": "batch_pipelines/concurrency_group",
            "value": "role_onboarding",
            "limit": 5,
        } in limits
        assert "sqlite" in type(instance.run_storage).__name__.lower()
    finally:
        instance.dispose()


def test_the_postgres_instance_stores_runs_in_postgres(tmp_path, monkeypatch, postgres_url):
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL", postgres_url
    )  # the documented postgresql+psycopg2:// form
    instance = _load(tmp_path / "home", ROOT / "deploy" / "postgres" / "dagster.yaml")
    try:
        assert "postgres" in type(instance.run_storage).__name__.lower()
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()
