"""Work done outside a Dagster run (`docs ... --run`) shows on the phase assets, a budget
pause shows as an observation, and the launcher starts no run for such jobs."""

from __future__ import annotations

import json

import dagster as dg
from click.testing import CliRunner

from batch_pipelines.cli import main
from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions, phase_key
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, JobOptions
from batch_pipelines.document_ai.claims import new_runner_id
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.reports import analytics
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.sensors import build_document_job_launcher
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore

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
            assert metadata["batch_status"].value == "COMPLETED"
            assert metadata["units_succeeded"].value == 3 and "cost_this_run" in metadata
            checks = {
                check_name: instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(asset, check_name), limit=1
                )[0]
                for check_name in ("reconciled_completed", "nothing_failed", "processed_something")
            }
            for record in checks.values():
                evaluation = record.event.asset_check_evaluation
                assert evaluation.passed and evaluation.metadata["partition"].value == key


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
