"""The batch-pipelines command, as a user types it."""

from click.testing import CliRunner

from batch_pipelines.cli import main
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.store.batch_store import JobChange


def test_demo_runs_end_to_end_and_says_where_to_look(tmp_path, monkeypatch):
    # A fresh project folder, as a newcomer has it: no DAGSTER_HOME, no store URL.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("BATCH_PIPELINES_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "EDM Creation after resubmission: batch 1 reconciled COMPLETED" in result.output
    assert "Portfolio Creation: batch 2 reconciled COMPLETED" in result.output
    assert "duplicate acceptances: none" in result.output
    assert "Where to look" in result.output
    _make_dev_shows_what_the_demo_did(tmp_path)


def _make_dev_shows_what_the_demo_did(project):
    """The demo's batches are in the store `make dev` and the CLI read, and its runs,
    materializations and partitions in the instance `make dev` opens (.dagster_home)."""
    import dagster as dg

    from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
    from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
    from batch_pipelines.instance import CODE_LOCATION_NAME
    from batch_pipelines.store.batch_store import BatchStore

    listing = CliRunner().invoke(main, ["batch", "list", "--json"])
    families = {row["family"] for row in __import__("json").loads(listing.output)}
    assert families == {"risk_modeling", "document_ai", "configured_batches", "role_onboarding"}

    store = BatchStore(f"sqlite:///{project / '.data' / 'batch_pipelines.db'}")
    groups = set(PreferenceGroupStore(store.engine).member_counts())
    store.dispose()
    with dg.DagsterInstance.from_config(str(project / ".dagster_home")) as instance:
        # make dev's preference sensor keeps the partitions whose groups the store has.
        assert groups and set(instance.get_dynamic_partitions(PREFERENCE_GROUPS.name)) == groups
        role = instance.get_latest_materialization_event(dg.AssetKey("role_onboarding"))
        assert role is not None
        role_run = instance.get_run_by_id(role.run_id)
        assert role_run.remote_job_origin.location_name == CODE_LOCATION_NAME
        assert instance.get_latest_materialization_event(
            dg.AssetKey(["risk_modeling", "edm_creation"])
        )


def test_batch_status_list_pause_and_resubmit_from_the_command_line(store, database_url):
    batch_id = store.create_batch(
        family="test", batch_type="EDM Creation", job_configurations=[{"key": "a"}]
    )
    store.activate_batch(batch_id)
    job = store.list_jobs(batch_id)[0]
    store.apply_job_changes(
        [JobChange(job.id, JobStatus.INITIATED, JobStatus.ERROR, last_error="boom")]
    )
    runner = CliRunner()
    url = ["--database-url", database_url]
    out = runner.invoke(main, ["batch", "status", str(batch_id), *url])
    assert out.exit_code == 0 and "ERROR" in out.output and "boom" in out.output
    assert (
        runner.invoke(main, ["batch", "pause", str(batch_id), *url])
        .output.strip()
        .endswith("PAUSED")
    )
    listing = runner.invoke(main, ["batch", "list", "--json", *url])
    assert f'"id": {batch_id}' in listing.output
    resub = runner.invoke(main, ["batch", "resubmit", str(job.id), *url])
    assert resub.exit_code == 0 and "resubmitted" in resub.output


def test_an_unknown_batch_is_a_clear_error_not_a_traceback(store, database_url):
    out = CliRunner().invoke(main, ["batch", "status", "987654", "--database-url", database_url])
    assert out.exit_code == 1 and "does not exist" in out.output


def test_every_command_group_reports_a_project_error_with_its_code(store, database_url):
    # Scripts match on the code: the same shape in every group.
    for args in (["batch", "status", "987654"], ["docs", "status", "987654"]):
        out = CliRunner().invoke(main, [*args, "--database-url", database_url])
        assert out.exit_code == 1, out.output
        assert out.output.startswith("Error: [BP-"), out.output
        assert "Traceback" not in out.output


def test_the_demo_refuses_a_project_whose_store_already_has_batches(tmp_path, monkeypatch):
    """The demo runs on the project's own store: it does not mix into batches already
    there (a second demo would meet the first one's cycle and roles), it says how to
    start fresh."""
    from batch_pipelines.store.batch_store import BatchStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("BATCH_PIPELINES_DATABASE_URL", raising=False)
    (tmp_path / ".data").mkdir()
    store = BatchStore(f"sqlite:///{tmp_path / '.data' / 'batch_pipelines.db'}")
    store.create_batch(family="test", batch_type="EDM Creation", job_configurations=[])
    store.dispose()
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert (
        result.output.startswith("Error: [BP-DEMO-NOT-FRESH]")
        and "make clean-data" in result.output
    )
    assert result.output.count("\n") == 1
