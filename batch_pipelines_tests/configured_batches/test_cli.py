"""`batch-pipelines jobs validate | list | status`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from batch_pipelines.cli import main
from batch_pipelines.configured_batches.contexts import ContextStore
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE, load_job_configuration
from batch_pipelines.configured_batches.repositories import CategoryRepository, UserRepository
from batch_pipelines.configured_batches.runner import run_batch
from batch_pipelines.resources import ModelsResource
from batch_pipelines.store.batch_store import BatchStore

from .batch_data import ACTIVE_USERS, job_file, seed


def test_validate_accepts_the_sample_and_names_job_and_field_of_each_problem(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["jobs", "validate", str(SAMPLE_JOBS_FILE)])
    assert ok.exit_code == 0 and "9 valid jobs, 0 problems" in ok.output
    bad = job_file(tmp_path, lambda raw: raw["jobs"][3].update(retry_limit=-1))
    result = runner.invoke(main, ["jobs", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert (
        payload["problems"][0]["job"] == "audience_trend_analysis"
        and payload["problems"][0]["field"] == "retry_limit"
    )
    assert len(payload["valid_jobs"]) == 8


def test_list_shows_each_jobs_schedule_or_feature_type():
    result = CliRunner().invoke(main, ["jobs", "list", "--file", str(SAMPLE_JOBS_FILE), "--json"])
    rows = {r["job_id"]: r for r in json.loads(result.output)["jobs"]}
    assert rows["user_welcome_notes"]["schedule"] == "30 7 * * * Europe/Paris"
    assert rows["personal_daily_digest"]["schedule"] == "preferences of daily_digest"


def test_status_by_user_and_tenant_reads_what_a_batch_run_wrote(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    seed(store.engine)
    jobs = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}
    run_batch(
        store,
        jobs["team_activity_digest"],
        tick="2026-11-30T08:00-05:00",
        client_factory=ModelsResource().client,
        users=UserRepository(store.engine),
        categories=CategoryRepository(store.engine),
    )
    store.dispose()
    runner = CliRunner()
    by_user = json.loads(
        runner.invoke(
            main, ["jobs", "status", "--user", ACTIVE_USERS[0], "--database-url", url, "--json"]
        ).output
    )
    assert (
        by_user["results"][0]["job_id"] == "team_activity_digest"
        and by_user["results"][0]["status"] == "succeeded"
    )
    assert (
        by_user["batch_references"][0]["batch_key"] == "team_activity_digest/2026-11-30T08:00-05:00"
    )
    by_tenant = runner.invoke(
        main, ["jobs", "status", "--tenant", "tenant_a", "--database-url", url]
    )
    assert "team_activity_digest" in by_tenant.output and "users    10" in by_tenant.output
    nothing = runner.invoke(
        main, ["jobs", "status", "--feature-type", "daily_digest", "--database-url", url]
    )
    assert "no configured batch results" in nothing.output
    both = runner.invoke(
        main, ["jobs", "status", "--user", "a", "--tenant", "b", "--database-url", url]
    )
    assert both.exit_code != 0 and "exactly one" in both.output


def test_seed_demo_data_fills_an_empty_store_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()
    first = runner.invoke(main, ["jobs", "seed-demo-data", "--users", "30", "--database-url", url])
    assert first.exit_code == 0 and "30 users (30 new" in first.output
    again = runner.invoke(main, ["jobs", "seed-demo-data", "--users", "30", "--database-url", url])
    assert "30 users (0 new" in again.output


def test_validate_on_a_binary_file_prints_one_line_naming_the_file(tmp_path):
    binary = tmp_path / "jobs.xlsx"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\xff\xfe\x00\x00")
    result = CliRunner().invoke(main, ["jobs", "validate", str(binary)])
    assert result.exit_code == 1 and not isinstance(result.exception, UnicodeDecodeError)
    errors = [line for line in result.output.splitlines() if line.startswith("ERROR")]
    assert errors == [
        "ERROR jobs.xlsx: not a UTF-8 text file (byte 0xff at offset 10); the job file is JSON text"
    ]
    assert "Traceback" not in result.output


def test_run_starts_a_static_job_now_through_dagster_and_prints_where_to_look(
    tmp_path, monkeypatch
):
    import dagster as dg

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    seed(store.engine)
    store.dispose()
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("BATCH_PIPELINES_DATABASE_URL", url)
    monkeypatch.delenv("CONFIGURED_JOBS_FILE", raising=False)
    tick = "2026-11-30T08:00-05:00"
    result = CliRunner().invoke(main, ["jobs", "run", "team_activity_digest", "--tick", tick])
    assert result.exit_code == 0, result.output
    assert f"(team_activity_digest/{tick}): COMPLETED, 1/1 requests succeeded" in result.output
    assert "2 result cards delivered" in result.output
    assert "where to look:" in result.output and "batch-pipelines batch status" in result.output
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.tags["dagster/partition"] == "team_activity_digest"
        assert run.tags["batch_pipelines/trigger"] == "manual"
        assert run.run_id in result.output
    store = BatchStore(url)
    assert ContextStore(store.engine).status_by_user(ACTIVE_USERS[0])[0]["tick"] == tick


def test_run_refuses_an_unknown_job_and_a_preference_job_without_its_group_in_one_line(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("CONFIGURED_JOBS_FILE", raising=False)
    runner = CliRunner()
    unknown = runner.invoke(main, ["jobs", "run", "no_such_job"])
    assert unknown.exit_code == 1
    assert unknown.output.strip().splitlines() == [
        "Error: [BP-CONFIG] job 'no_such_job' is not a valid job of sample_jobs.json"
    ]
    preference = runner.invoke(main, ["jobs", "run", "personal_daily_digest"])
    assert preference.exit_code == 1 and "give --group KEY" in preference.output
    assert len(preference.output.strip().splitlines()) == 1


def test_run_starts_a_preference_job_for_one_of_its_groups(tmp_path, monkeypatch):
    import dagster as dg

    from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS

    from .batch_data import add_preferences

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    seed(store.engine)
    add_preferences(
        store.engine,
        [
            {
                "tenant_id": "tenant_a",
                "user_id": uid,
                "feature_type": "daily_digest",
                "frequency": "daily",
                "preferred_time": "09:00",
                "timezone": "UTC",
            }
            for uid in ACTIVE_USERS[:2]
        ],
    )
    store.dispose()
    key = "daily_digest|daily|*|09:00|UTC"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("BATCH_PIPELINES_DATABASE_URL", url)
    monkeypatch.delenv("CONFIGURED_JOBS_FILE", raising=False)
    runner = CliRunner()
    missing = runner.invoke(main, ["jobs", "run", "personal_daily_digest", "--group", key])
    assert missing.exit_code == 1 and "is not a partition on this instance" in missing.output
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, [key])
    result = runner.invoke(
        main,
        ["jobs", "run", "personal_daily_digest", "--group", key, "--tick", "2026-12-01T09:00Z"],
    )
    assert result.exit_code == 0, result.output
    assert "2/2 requests succeeded, 2 result cards delivered" in result.output
    assert "preference_batch, partition daily_digest|daily|*|09:00|UTC" in result.output
