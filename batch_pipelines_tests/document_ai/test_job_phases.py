"""Seed 002 parity: validation attempts per phase, and a job carrying its own phases."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from batch_pipelines.cli import main
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, check_pipeline
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import (
    PipelineTemplate,
    ValidationSpec,
    describe_validation_error,
    load_pipelines,
)
from batch_pipelines.document_ai.runner import DocumentJobRunner, RunnerOptions
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.models import ModelSimulator

PIPELINES = load_pipelines()
TEXT = "Marie Curie studied radioactivity in Paris and won two Nobel Prizes for her research."
FAST = RunnerOptions(control_check_seconds=0.02, max_checkpoint_seconds=0.2)
OWN_PHASES = [
    {"name": "tidy", "task_type": "text_cleanup"},
    {"name": "people", "task_type": "entity_extraction", "model": "sim-large"},
    {
        "name": "short",
        "task_type": "summarization",
        "validation": {"enabled": True, "min_score": 10, "max_attempts": 1},
    },
]


def _run(jobs, job, template):
    async def go():
        async with model_client(ModelSimulator()) as client:
            return await DocumentJobRunner(jobs, job, template, client, options=FAST).run_all()

    return asyncio.run(go())


def test_validation_attempts_are_set_per_phase_and_default_to_three():
    assert ValidationSpec().max_attempts == 3
    assert ValidationSpec(enabled=True, max_attempts=5).max_attempts == 5
    with pytest.raises(ValidationError) as caught:
        PipelineTemplate.model_validate(
            {
                "name": "p",
                "phases": [{"name": "a", "task_type": "chat", "validation": {"max_attempts": 0}}],
            }
        )
    assert describe_validation_error(caught.value).startswith("phases.0.validation.max_attempts")


def test_a_job_runs_its_own_phases_instead_of_its_pipelines(store):
    jobs = DocumentJobStore(store)
    template = PIPELINES["document_pipeline"]
    spec = BatchJobSpec(
        name="own phases",
        project_id="p",
        pipeline="document_pipeline",
        items=parse_items([{"content": f"{TEXT} {i}"} for i in range(3)]),
        phases=OWN_PHASES,
    )
    check_pipeline(spec, PIPELINES)
    job = jobs.create_job(spec, template)
    assert [p.name for p in jobs.get_job(job.id).phases] == ["tidy", "people", "short"]
    reports = _run(jobs, job, template)
    assert [(r.phase, r.task_type, r.model) for r in reports] == [
        ("tidy", "text_cleanup", "sim-small"),
        ("people", "entity_extraction", "sim-large"),
        ("short", "summarization", "sim-large"),
    ]
    counts = jobs.phase_counts(job.batch_id)
    assert set(counts) == {"tidy", "people", "short"}
    # min score 10 with one attempt: items that score below fail after a single call
    rows = [r for r in jobs.phase_rows(job.batch_id, phases=["short"]) if r["status"] == "FAILED"]
    assert all(r["attempts"] == 1 for r in rows)


def test_a_jobs_own_phases_are_validated_like_a_templates():
    items = parse_items([{"content": TEXT}])
    for phases, problem in [
        ([], "phases: a pipeline needs 1 to 10 phases, got 0"),
        ([OWN_PHASES[0], OWN_PHASES[0]], "is used twice"),
        ([{"name": "x", "task_type": "nope"}], "phases.0.task_type: 'nope' is not one of"),
    ]:
        with pytest.raises(ValidationError) as caught:
            BatchJobSpec(
                name="j", project_id="p", pipeline="document_pipeline", items=items, phases=phases
            )
        assert problem in describe_validation_error(caught.value)
    spec = BatchJobSpec(
        name="j", project_id="p", pipeline="document_pipeline", items=items, phases=OWN_PHASES[:2]
    )
    with pytest.raises(
        ConfigurationError, match="gives 2 phases; pipeline document_pipeline runs 3"
    ):
        check_pipeline(spec, PIPELINES)


def test_the_cli_takes_a_jobs_own_phases_from_a_yaml_file(tmp_path):
    import yaml

    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"content": TEXT}) + "\n")
    phases = tmp_path / "phases.yaml"
    phases.write_text(yaml.safe_dump({"phases": OWN_PHASES}))
    db = f"sqlite:///{tmp_path / 's.db'}"
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline"]
        + ["--phases", str(phases), "--run", "--database-url", db, "--json"],
    )
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)
    assert [p["name"] for p in job["phases"]] == ["tidy", "people", "short"]
    status = json.loads(
        CliRunner()
        .invoke(main, ["docs", "status", job["key"], "--database-url", db, "--json"])
        .output
    )
    assert [p["phase"] for p in status["phases"]] == ["tidy", "people", "short"]


def test_in_dagster_each_phase_asset_runs_the_jobs_phase_at_its_position(tmp_path):
    import dagster as dg

    from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions, phase_key
    from batch_pipelines.document_ai.jobs import submit_document_job
    from batch_pipelines.document_ai.resources import DocumentAISettings
    from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
    from batch_pipelines.store.batch_store import BatchStore

    url = f"sqlite:///{tmp_path / 's.db'}"
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "models": ModelsResource(),
        "teams": TeamsResource(),
        "document_ai": DocumentAISettings(control_check_seconds=0.05),
    }
    instance = dg.DagsterInstance.ephemeral()
    config = {
        "name": "own phases",
        "project_id": "p",
        "pipeline": "document_pipeline",
        "items": [{"content": TEXT}],
        "phases": OWN_PHASES,
    }
    submitted = (
        dg.Definitions(jobs=[submit_document_job], resources=resources)
        .resolve_job_def("submit_document_job")
        .execute_in_process(
            run_config={"ops": {"submit_document_job_op": {"config": config}}}, instance=instance
        )
    )
    assert submitted.success
    jobs = DocumentJobStore(BatchStore(url))
    (job,), _ = jobs.list_jobs()
    template = PIPELINES["document_pipeline"]
    assets, asset_job, _ = build_pipeline_definitions(template)
    result = (
        dg.Definitions(assets=assets, jobs=[asset_job], resources=resources)
        .resolve_job_def(asset_job.name)
        .execute_in_process(partition_key=job.key, instance=instance, tags={JOB_TAG: job.key})
    )
    assert result.success
    assert jobs.get_job(job.id).status.value == "COMPLETED"
    assert set(jobs.phase_counts(job.batch_id)) == {"tidy", "people", "short"}
    first = instance.get_latest_materialization_event(phase_key(template, template.phases[0]))
    assert first.asset_materialization.metadata["task_type"].value == "text_cleanup"
    jobs.store.dispose()
