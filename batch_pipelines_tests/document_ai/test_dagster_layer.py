"""Document AI in Dagster: phase assets per job partition, lifecycle jobs, the two sensors."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions, phase_key
from batch_pipelines.document_ai.batch_jobs import DocJobStatus
from batch_pipelines.document_ai.jobs import (
    add_reference_documents,
    cancel_document_job,
    delete_document_job,
    export_document_job_results,
    pause_document_job,
    resume_document_job,
    start_document_job,
    submit_document_job,
)
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.sensors import (
    GENERATION_TAG,
    build_document_job_launcher,
    document_items_drop_sensor,
)
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.metadata import STANDARD_CHECKS
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.test_metadata import assert_standard_metadata

PIPELINES = load_pipelines()
TEXTS = [
    "Elizabeth Bennet walked to Netherfield through the muddy fields. Mr Darcy admired her fine eyes.",
    "The company reported record revenue and profit growth. Investors welcomed the quarterly results.",
    "The hospital opened a new clinic for patients. Doctors said the treatment improved health outcomes.",
]


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "models": ModelsResource(),
        "teams": TeamsResource(),
        "document_ai": DocumentAISettings(
            drop_folder=str(tmp_path / "drop"), exports_dir=str(tmp_path / "exports")
        ),
    }
    instance = dg.DagsterInstance.ephemeral()
    store = BatchStore(url)
    yield resources, instance, DocumentJobStore(store), tmp_path
    store.dispose()


def _execute(job_def, resources, instance, config: dict, op: str) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(jobs=[job_def], resources=resources)
    return defs.get_job_def(job_def.name).execute_in_process(
        run_config={"ops": {op: {"config": config}}}, instance=instance, raise_on_error=False
    )


def _submit(resources, instance, pipeline: str, n: int, **extra) -> dg.ExecuteInProcessResult:
    config = {
        "name": f"{pipeline} test",
        "project_id": "proj-1",
        "pipeline": pipeline,
        "items": [
            {"content": TEXTS[i % 3] + f" Item {i}.", "metadata": {"source": f"doc-{i}"}}
            for i in range(n)
        ],
        **extra,
    }
    return _execute(submit_document_job, resources, instance, config, "submit_document_job_op")


def _materialize(template_name: str, key: str, resources, instance) -> dg.ExecuteInProcessResult:
    assets, job, _ = build_pipeline_definitions(PIPELINES[template_name])
    defs = dg.Definitions(assets=assets, jobs=[job], resources=resources)
    return defs.resolve_job_def(job.name).execute_in_process(
        partition_key=key, instance=instance, tags={JOB_TAG: key}, raise_on_error=False
    )


def test_a_submitted_job_runs_through_its_phase_assets_with_cost_and_quality_metadata(setup):
    resources, instance, jobs, _ = setup
    assert _submit(resources, instance, "document_pipeline", 6).success
    (job,), _ = jobs.list_jobs()
    assert job.status == DocJobStatus.RUNNING
    assert instance.has_dynamic_partition("document_pipeline_jobs", job.key)

    result = _materialize("document_pipeline", job.key, resources, instance)
    assert result.success
    template = PIPELINES["document_pipeline"]
    for phase in template.phases:
        mat = instance.get_latest_materialization_event(
            phase_key(template, phase)
        ).asset_materialization
        assert mat.partition == job.key
        assert_standard_metadata(mat.metadata)
        md = {k: v.value for k, v in mat.metadata.items()}
        assert md["units_total"] == 6 and md["units_succeeded"] + md["units_failed"] == 6
        assert md["batch_id"] == str(job.batch_id)
        # One run did the whole phase: its spend is the phase's spend.
        assert md["cost"] == md["cost_this_run"] > 0 and md["tokens"] == md["tokens_this_run"] > 0
        assert md["p95_latency_ms"] >= md["latency_mean_ms"] > 0
        if phase.validation.enabled:
            assert sum(md["validation_scores"].values()) >= md["items_processed_this_run"]
    assert jobs.get_job(job.id).status == DocJobStatus.COMPLETED
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key, e.check_name) for e in evaluations} == {
        (phase_key(template, p), name) for p in template.phases for name in STANDARD_CHECKS
    }
    for evaluation in evaluations:
        assert evaluation.metadata["partition"].value == job.key
        assert evaluation.metadata["units_total"].value == 6


def test_a_paused_job_materializes_nothing_and_its_later_phases_are_skipped(setup):
    resources, instance, jobs, _ = setup
    _submit(resources, instance, "book_translation", 3)
    (job,), _ = jobs.list_jobs()
    assert _execute(
        pause_document_job, resources, instance, {"job": job.key}, "pause_document_job_op"
    ).success
    result = _materialize("book_translation", job.key, resources, instance)
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert jobs.get_job(job.id).status == DocJobStatus.PAUSED


def test_illegal_actions_fail_their_run_with_the_rule_in_words(setup):
    resources, instance, jobs, _ = setup
    _submit(resources, instance, "embedding_regeneration", 2, auto_start=False)
    (job,), _ = jobs.list_jobs()
    result = _execute(
        pause_document_job, resources, instance, {"job": job.key}, "pause_document_job_op"
    )
    assert not result.success
    failure = result.get_failed_step_keys() and result.all_events
    messages = " ".join(str(e.event_specific_data) for e in failure if e.is_failure)
    assert "only a RUNNING job can be paused" in messages
    assert _execute(
        start_document_job, resources, instance, {"job": job.key}, "start_document_job_op"
    ).success
    assert not _execute(
        delete_document_job, resources, instance, {"job": job.key}, "delete_document_job_op"
    ).success
    assert _execute(
        cancel_document_job, resources, instance, {"job": job.key}, "cancel_document_job_op"
    ).success
    assert not _execute(
        resume_document_job, resources, instance, {"job": job.key}, "resume_document_job_op"
    ).success
    assert _execute(
        delete_document_job, resources, instance, {"job": job.key}, "delete_document_job_op"
    ).success
    assert jobs.list_jobs()[1] == 0


def test_bad_items_are_refused_with_their_index_and_nothing_is_stored(setup):
    resources, instance, jobs, tmp_path = setup
    bad = tmp_path / "items.jsonl"
    bad.write_text(
        json.dumps({"content": "fine"}) + "\n" + json.dumps({"content": ""}) + "\n" + "{not json\n"
    )
    result = _execute(
        submit_document_job,
        resources,
        instance,
        {"name": "bad", "project_id": "p", "pipeline": "document_pipeline", "items_path": str(bad)},
        "submit_document_job_op",
    )
    assert not result.success
    text = " ".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)
    assert "line 2" in text and "line 3" in text
    assert jobs.list_jobs()[1] == 0


def test_the_launcher_asks_one_run_per_start_and_marks_a_job_whose_run_died_failed(setup):
    resources, instance, jobs, _ = setup
    _submit(resources, instance, "embedding_regeneration", 2)
    (job,), _ = jobs.list_jobs()
    _, embedding_job, _ = build_pipeline_definitions(PIPELINES["embedding_regeneration"])
    launcher = build_document_job_launcher([embedding_job])
    defs = dg.Definitions(sensors=[launcher], jobs=[embedding_job], resources=resources)
    sensor = defs.resolve_sensor_def("document_job_launcher")

    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensor(ctx)
    (request,) = result.run_requests
    assert request.run_key == f"{job.key}#1" and request.partition_key == job.key
    assert request.tags[GENERATION_TAG] == "1"

    # The run was launched and died (e.g. its worker was killed): the job is marked FAILED.
    run = instance.create_run_for_job(
        dg.Definitions(jobs=[submit_document_job], resources=resources).get_job_def(
            "submit_document_job"
        ),
        run_config={
            "ops": {
                "submit_document_job_op": {
                    "config": {"name": "x", "project_id": "p", "pipeline": "x"}
                }
            }
        },
        tags={JOB_TAG: job.key, GENERATION_TAG: "1"},
        status=dg.DagsterRunStatus.FAILURE,
    )
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        assert sensor(ctx).run_requests == []
    failed = jobs.get_job(job.id)
    assert failed.status == DocJobStatus.FAILED and run.run_id in failed.status_reason

    # Resuming bumps the generation: one new run.
    assert _execute(
        resume_document_job, resources, instance, {"job": job.key}, "resume_document_job_op"
    ).success
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        (request,) = sensor(ctx).run_requests
    assert request.run_key == f"{job.key}#2"


def test_the_drop_folder_sensor_launches_a_submission_per_new_file_from_its_path(setup):
    resources, instance, _, tmp_path = setup
    folder = tmp_path / "drop" / "document_pipeline" / "proj-7"
    folder.mkdir(parents=True)
    (folder / "october-papers.jsonl").write_text(json.dumps({"content": TEXTS[0]}) + "\n")
    defs = dg.Definitions(
        sensors=[document_items_drop_sensor], resources=resources, jobs=[submit_document_job]
    )
    sensor = defs.resolve_sensor_def("document_items_drop_sensor")
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensor(ctx)
        cursor = result.cursor
    (request,) = result.run_requests
    config = request.run_config["ops"]["submit_document_job_op"]["config"]
    assert config["pipeline"] == "document_pipeline" and config["project_id"] == "proj-7"
    assert config["name"] == "october-papers"
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)


def test_results_export_to_jsonl_and_xlsx_and_rag_passages_are_kept(setup):
    resources, instance, jobs, tmp_path = setup
    notes = tmp_path / "characters.md"
    notes.write_text(
        "Elizabeth Bennet is the second daughter, witty and quick to judge.\n\n"
        "Mr Darcy is a proud and wealthy gentleman of Pemberley in Derbyshire.\n\n"
        "Netherfield is the estate rented by Mr Bingley near Meryton."
    )
    assert _execute(
        add_reference_documents,
        resources,
        instance,
        {"project_id": "proj-1", "paths": [str(notes)]},
        "add_reference_documents_op",
    ).success
    _submit(resources, instance, "book_translation", 2, target_language="French")
    (job,), _ = jobs.list_jobs()
    assert _materialize("book_translation", job.key, resources, instance).success
    for fmt in ("jsonl", "xlsx"):
        assert _execute(
            export_document_job_results,
            resources,
            instance,
            {"job": job.key, "format": fmt},
            "export_document_job_results_op",
        ).success
    lines = (tmp_path / "exports" / f"{job.key}.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["index"] for r in rows] == [0, 1]
    assert all(r["passages"]["xml_tagging"] for r in rows)
    assert all(
        set(r["phase_outputs"]) == {"text_cleanup", "xml_tagging", "translation"} for r in rows
    )
    from openpyxl import load_workbook

    sheet = load_workbook(tmp_path / "exports" / f"{job.key}.xlsx").active
    assert sheet.max_row == 3
    assert Path(tmp_path / "exports" / f"{job.key}.xlsx").stat().st_size > 0


def test_the_launcher_of_the_code_location_may_launch_every_pipeline_job():
    from batch_pipelines.definitions import defs

    sensor = defs().resolve_sensor_def("document_job_launcher")
    assert {t.job_name for t in sensor.targets} == {f"{name}_job" for name in PIPELINES}


def test_an_invalid_template_is_left_out_and_shown_by_a_failing_sensor_while_the_rest_loads(
    tmp_path, monkeypatch
):
    import shutil

    from batch_pipelines.document_ai.pipelines import SHIPPED_PIPELINES_DIR
    from batch_pipelines.document_ai.sensors import document_pipelines_problems

    folder = tmp_path / "pipelines"
    shutil.copytree(SHIPPED_PIPELINES_DIR, folder)
    (folder / "broken.yaml").write_text(
        "name: broken\nphases:\n  - name: a\n    task_type: telepathy\n"
    )
    monkeypatch.setenv("DOCUMENT_AI_PIPELINES_DIR", str(folder))
    from batch_pipelines.definitions import defs

    loaded = defs()
    assert loaded.resolve_job_def("document_pipeline_job") is not None
    assert "broken_job" not in {j.name for j in loaded.resolve_all_job_defs()}
    settings = DocumentAISettings(pipelines_dir=str(folder))
    with (
        dg.build_sensor_context(resources={"document_ai": settings}) as ctx,
        pytest.raises(Exception, match="broken.yaml"),
    ):
        document_pipelines_problems(ctx)


def test_model_routes_and_prices_come_from_settings_and_an_unpriced_model_is_named():
    from batch_pipelines.core.errors import ConfigurationError

    settings = DocumentAISettings(
        model_routes='{"summarization": "gpt-4o", "*": "gpt-4o-mini"}',
        prices='{"gpt-4o": {"input_per_1k": "0.0025", "output_per_1k": "0.01"}, '
        '"gpt-4o-mini": {"input_per_1k": "0.00015", "output_per_1k": "0.0006"}, '
        '"judge": [0.0001, 0.0004], "embedder": [0.00002, 0]}',
        validator_model="judge",
        embedding_model="embedder",
    )
    assert settings.router().model_for("summarization") == "gpt-4o"
    assert settings.router().model_for("ocr_cleanup") == "gpt-4o-mini"
    assert settings.price_table().price_for("judge") is not None
    unpriced = DocumentAISettings(
        model_routes='{"*": "gpt-4o-mini"}', prices='{"gpt-4o-mini": [0.1, 0.2]}'
    )
    with pytest.raises(ConfigurationError, match="sim-validator|sim-embed"):
        unpriced.price_table()
    with pytest.raises(ConfigurationError, match="model_routes: not valid JSON"):
        DocumentAISettings(model_routes="{nope").router()


def test_a_run_whose_worker_died_is_reported_failed_and_dagsters_retry_resumes_the_job_without_a_new_run(
    setup,
):
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from batch_pipelines.store.document_ai_tables import document_jobs

    resources, instance, jobs, _ = setup
    _submit(resources, instance, "embedding_regeneration", 3)
    (job,), _ = jobs.list_jobs()
    _, embedding_job, _ = build_pipeline_definitions(PIPELINES["embedding_regeneration"])
    defs = dg.Definitions(
        sensors=[build_document_job_launcher([embedding_job])],
        jobs=[embedding_job],
        resources=resources,
    )
    sensor = defs.resolve_sensor_def("document_job_launcher")
    # The launched run started, its worker claimed the job and was killed: the run stays
    # STARTED and the claim expired five minutes ago.
    run = instance.create_run_for_job(
        dg.Definitions(jobs=[submit_document_job], resources=resources).resolve_job_def(
            "submit_document_job"
        ),
        run_config={
            "ops": {
                "submit_document_job_op": {
                    "config": {"name": "x", "project_id": "p", "pipeline": "x"}
                }
            }
        },
        tags={JOB_TAG: job.key, GENERATION_TAG: "1"},
        status=dg.DagsterRunStatus.STARTED,
    )
    with jobs.engine.begin() as conn:
        conn.execute(
            sa.update(document_jobs).values(
                runner_id="dead-worker", lease_expires_at=datetime.now(UTC) - timedelta(minutes=5)
            )
        )
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        assert sensor(ctx).run_requests == []
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    failed = jobs.get_job(job.id)
    assert (
        failed.status == DocJobStatus.FAILED
        and "stopped renewing its claim" in failed.status_reason
    )

    # Dagster's run retry (same tags, dagster/retry_number) resumes the job in that run.
    assets, asset_job, _ = build_pipeline_definitions(PIPELINES["embedding_regeneration"])
    retry = dg.Definitions(assets=assets, jobs=[asset_job], resources=resources).resolve_job_def(
        asset_job.name
    )
    result = retry.execute_in_process(
        partition_key=job.key,
        instance=instance,
        tags={JOB_TAG: job.key, GENERATION_TAG: "1", "dagster/retry_number": "1"},
    )
    assert result.success
    done = jobs.get_job(job.id)
    assert done.status == DocJobStatus.COMPLETED and done.generation == failed.generation
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)  # nothing RUNNING, no second run


def test_the_launcher_tells_the_runs_of_several_jobs_apart(setup):
    resources, instance, jobs, _ = setup
    _submit(resources, instance, "embedding_regeneration", 2)
    _submit(resources, instance, "embedding_regeneration", 3)
    (first, second), _ = jobs.list_jobs()
    _, embedding_job, _ = build_pipeline_definitions(PIPELINES["embedding_regeneration"])
    defs = dg.Definitions(
        sensors=[build_document_job_launcher([embedding_job])],
        jobs=[embedding_job],
        resources=resources,
    )
    sensor = defs.resolve_sensor_def("document_job_launcher")
    # Only the first job has a run, and it died: the second still needs its run.
    instance.create_run_for_job(
        dg.Definitions(jobs=[submit_document_job], resources=resources).get_job_def(
            "submit_document_job"
        ),
        run_config={
            "ops": {
                "submit_document_job_op": {
                    "config": {"name": "x", "project_id": "p", "pipeline": "x"}
                }
            }
        },
        tags={JOB_TAG: first.key, GENERATION_TAG: "1"},
        status=dg.DagsterRunStatus.FAILURE,
    )
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        (request,) = sensor(ctx).run_requests
    assert request.partition_key == second.key
    assert jobs.get_job(first.id).status == DocJobStatus.FAILED
    assert jobs.get_job(second.id).status == DocJobStatus.RUNNING
