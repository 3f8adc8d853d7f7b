"""Work done outside a Dagster run (`docs ... --run`) shows on the phase assets, a budget
pause shows as an observation, and the launcher starts no run for such jobs."""

from __future__ import annotations

import json

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from batch_pipelines.cli import main
from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions, phase_key
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, JobOptions
from batch_pipelines.document_ai.claims import new_runner_id
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.reports import analytics
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.runner import DocumentJobRunner
from batch_pipelines.document_ai.sensors import build_document_job_launcher
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.document_ai.test_job_phases import OWN_PHASES

PIPELINES = load_pipelines()
TEXT = "Marie Curie studied radioactivity in Paris and won two Nobel Prizes for her research."


def _observations(instance: dg.DagsterInstance, key: dg.AssetKey):
    return [
        r.event_log_entry.asset_observation
        for r in instance.fetch_observations(key, limit=10).records
    ]


def test_a_job_run_from_the_cli_materializes_its_partition_on_every_phase_asset(
    tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "papers.jsonl"
    items.write_text("\n".join(json.dumps({"content": f"{TEXT} {i}"}) for i in range(3)) + "\n")
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline", "--run"]
        + ["--database-url", db, "--json"],
    )
    assert out.exit_code == 0, out.output
    key = json.loads(out.output)["key"]
    template = PIPELINES["document_pipeline"]
    with dg.DagsterInstance.get() as instance:
        assert instance.has_dynamic_partition("document_pipeline_jobs", key)
        for phase in template.phases:
            asset = phase_key(template, phase)
            assert instance.get_materialized_partitions(asset) == {key}, phase.name
            event = instance.get_latest_materialization_event(asset)
            metadata = event.asset_materialization.metadata
            # Recorded as the phase ended, before the job was completed.
            assert metadata["batch_status"].value == "RUNNING"
            assert metadata["units_succeeded"].value == 3 and "cost_this_run" in metadata
            checks = {
                check_name: instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(asset, check_name), limit=1
                )[0]
                for check_name in ("reconciled_completed", "nothing_failed", "processed_something")
            }
            for record in checks.values():
                evaluation = record.event.asset_check_evaluation
                assert evaluation.metadata["partition"].value == key
            assert _materializations(instance, asset, key) == 1, phase.name


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> int:
    return len(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=10
        ).records
    )


def _submit_run(tmp_path, db: str, *extra: str):
    items = tmp_path / "papers.jsonl"
    items.write_text("\n".join(json.dumps({"content": f"{TEXT} {i}"}) for i in range(3)) + "\n")
    return CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline", "--run", *extra]
        + ["--database-url", db, "--json"],
    )


def _killed_before_completing(monkeypatch) -> None:
    """The worker is killed after its last phase, before it marks the job COMPLETED."""

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DocumentJobRunner, "finish", killed)


def test_a_cli_worker_killed_before_completing_the_job_has_recorded_every_phase_it_finished(
    tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    db = f"sqlite:///{tmp_path / 's.db'}"
    _killed_before_completing(monkeypatch)
    out = _submit_run(tmp_path, db)
    assert out.exit_code != 0
    jobs = DocumentJobStore(BatchStore(db))
    (job,), _ = jobs.list_jobs()
    assert job.status.value == "RUNNING"
    template = PIPELINES["document_pipeline"]
    with dg.DagsterInstance.get() as instance:
        for phase in template.phases:
            assert _materializations(instance, phase_key(template, phase), job.key) == 1
    jobs.store.dispose()


@pytest.mark.parametrize("own_phases", [False, True])
def test_docs_status_records_a_completed_jobs_missing_phases_once(
    tmp_path, monkeypatch, own_phases
):
    db = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # worked where nothing is recorded
    extra = []
    if own_phases:  # recorded on the pipeline's assets at their positions, not by own name
        phases = tmp_path / "phases.yaml"
        phases.write_text(yaml.safe_dump({"phases": OWN_PHASES}))
        extra = ["--phases", str(phases)]
    out = _submit_run(tmp_path, db, *extra)
    assert out.exit_code == 0, out.output
    key = json.loads(out.output)["key"]
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    template = PIPELINES["document_pipeline"]
    first = template.phases[0]
    with dg.DagsterInstance.get() as instance:
        # One phase was recorded before the kill; the others were lost.
        instance.add_dynamic_partitions("document_pipeline_jobs", [key])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=phase_key(template, first), partition=key)
        )
    for _ in range(2):
        shown = CliRunner().invoke(main, ["docs", "status", key, "--database-url", db])
        assert shown.exit_code == 0, shown.output
    with dg.DagsterInstance.get() as instance:
        for phase in template.phases:
            assert _materializations(instance, phase_key(template, phase), key) == 1, phase.name
        last = instance.get_latest_materialization_event(phase_key(template, template.phases[-1]))
        assert last.asset_materialization.metadata["batch_status"].value == "COMPLETED"
        assert last.asset_materialization.metadata["units_succeeded"].value == 3


def test_the_launcher_records_the_phases_of_a_settled_job_it_completes(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with monkeypatch.context() as killing:
        _killed_before_completing(killing)
        assert _submit_run(tmp_path, db).exit_code != 0
    jobs = DocumentJobStore(BatchStore(db))
    (job,), _ = jobs.list_jobs()
    assert job.status.value == "RUNNING" and job.runner_id is None
    template = PIPELINES["document_pipeline"]
    _, asset_job, _ = build_pipeline_definitions(template)
    sensor = build_document_job_launcher([asset_job])
    resources = {
        "batch_store": BatchStoreResource(database_url=db),
        "document_ai": DocumentAISettings(),
    }
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensor(ctx)
    assert not result.run_requests
    assert jobs.get_job(job.id).status.value == "COMPLETED"
    for phase in template.phases:
        assert _materializations(instance, phase_key(template, phase), job.key) == 1, phase.name
    jobs.store.dispose()


def test_a_budget_paused_job_shows_its_state_on_the_asset_and_a_success_rate(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "models": ModelsResource(),
        "teams": TeamsResource(),
        "document_ai": DocumentAISettings(control_check_seconds=0.05),
    }
    jobs = DocumentJobStore(BatchStore(url))
    template = PIPELINES["document_pipeline"]
    job = jobs.create_job(
        BatchJobSpec(
            name="on a budget",
            project_id="p",
            pipeline="document_pipeline",
            items=parse_items([{"content": f"{TEXT} {i}"} for i in range(12)]),
            options=JobOptions(concurrency=4, cost_budget="0.002"),
        ),
        template,
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("document_pipeline_jobs", [job.key])
    assets, asset_job, _ = build_pipeline_definitions(template)
    defs = dg.Definitions(assets=assets, jobs=[asset_job], resources=resources)
    defs.resolve_job_def(asset_job.name).execute_in_process(
        partition_key=job.key, instance=instance, tags={JOB_TAG: job.key}, raise_on_error=False
    )
    job = jobs.get_job(job.id)
    assert job.status.value == "PAUSED"
    stopped_in = next(p for p in template.phases if _observations(instance, phase_key(template, p)))
    (observed,) = _observations(instance, phase_key(template, stopped_in))
    assert observed.partition == job.key
    assert observed.metadata["batch_status"].value == "PAUSED"
    assert observed.metadata["stopped"].value == "budget"
    assert "cost budget 0.002 reached" in observed.metadata["job_status_reason"].value
    assert isinstance(analytics(jobs, job, template)["success_rate"], float)
    jobs.store.dispose()


def test_the_launcher_starts_no_run_for_a_job_a_live_cli_worker_holds(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = DocumentJobStore(BatchStore(url))
    template = PIPELINES["embedding_regeneration"]
    spec = BatchJobSpec(
        name="held",
        project_id="p",
        pipeline="embedding_regeneration",
        items=parse_items([{"content": TEXT}]),
    )
    jobs.create_job(spec, template, claimed_by=new_runner_id(), lease_seconds=600)
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "document_ai": DocumentAISettings(),
    }
    _, asset_job, _ = build_pipeline_definitions(template)
    sensor = build_document_job_launcher([asset_job])
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=resources
    ) as ctx:
        result = sensor(ctx)
    assert not result.run_requests
    jobs.store.dispose()


def test_the_launcher_starts_no_run_for_a_job_settled_since_it_was_read(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = DocumentJobStore(BatchStore(url))
    template = PIPELINES["embedding_regeneration"]
    spec = BatchJobSpec(
        name="settled meanwhile",
        project_id="p",
        pipeline="embedding_regeneration",
        items=parse_items([{"content": TEXT}]),
    )
    running = jobs.create_job(spec, template)
    jobs.apply_action(running.id, "complete")  # a --run worker finished it meanwhile
    # What the tick read a moment before: the job still RUNNING.
    monkeypatch.setattr(DocumentJobStore, "running_jobs", lambda self: [running])
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "document_ai": DocumentAISettings(),
    }
    _, asset_job, _ = build_pipeline_definitions(template)
    sensor = build_document_job_launcher([asset_job])
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=resources
    ) as ctx:
        result = sensor(ctx)
    assert not result.run_requests
    jobs.store.dispose()


def test_a_finished_phase_is_materialized_once_per_job_and_a_stop_always_shows():
    from batch_pipelines.document_ai.runless import needs_record

    assert needs_record(stopped=False, already_materialized=False)
    assert not needs_record(stopped=False, already_materialized=True)  # a resume's empty redo
    assert needs_record(stopped=True, already_materialized=False)


def test_a_dagster_instance_that_cannot_take_a_record_does_not_fail_the_cli_workers_job(
    tmp_path, monkeypatch
):
    from batch_pipelines.document_ai import runless

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def broken(*_args, **_kwargs):
        raise RuntimeError("event log unavailable")

    monkeypatch.setattr(runless, "record_phase", broken)
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "papers.jsonl"
    items.write_text(json.dumps({"content": TEXT}) + "\n")
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline", "--run"]
        + ["--database-url", db],
    )
    assert out.exit_code == 0, out.output
    assert "COMPLETED" in out.output.splitlines()[-1]
    assert "not recorded on the assets" in out.output and "event log unavailable" in out.output
