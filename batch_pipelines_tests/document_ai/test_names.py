"""User-chosen job names, projects and pipelines become partition keys, folder and file
names: each is checked where it enters, and never echoed whole in an error."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from batch_pipelines.cli import main
from batch_pipelines.core.names import UnsafeName
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec
from batch_pipelines.document_ai.exports import export_results
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.jobs import submit_document_job
from batch_pipelines.document_ai.pipelines import describe_validation_error, load_pipelines
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.sensors import document_items_drop_sensor, drop_path_problem
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.store.batch_store import BatchStore

ITEMS = parse_items([{"content": "Some text to work on."}])


def _spec(**fields) -> BatchJobSpec:
    return BatchJobSpec(
        **{"name": "papers", "project_id": "lab", "pipeline": "document_pipeline", **fields},
        items=ITEMS,
    )


@pytest.mark.parametrize("field", ["name", "project_id", "pipeline"])
@pytest.mark.parametrize("value", ["../../outside", "a/b", "..", "", " lead", "x" * 101])
def test_a_job_name_project_or_pipeline_that_is_not_a_safe_name_is_refused(field, value):
    with pytest.raises(ValidationError) as caught:
        _spec(**{field: value})
    assert describe_validation_error(caught.value).startswith(f"{field}: ")


def test_a_100_kb_job_name_is_not_echoed_whole_in_the_error():
    huge = "n" * 100_000
    with pytest.raises(ValidationError) as caught:
        _spec(name=huge)
    message = describe_validation_error(caught.value)
    assert len(message) < 400, len(message)


def test_a_100_kb_job_reference_is_shortened_in_the_cli_error(tmp_path):
    out = CliRunner().invoke(
        main, ["docs", "status", "j" * 100_000, "--database-url", f"sqlite:///{tmp_path / 's'}"]
    )
    assert out.exit_code == 1 and "BP-NOT-FOUND" in out.output
    assert len(out.output) < 400, len(out.output)


def test_the_cli_refuses_a_job_name_that_would_climb_out_of_a_folder(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"content": "text"}) + "\n")
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline"]
        + ["--name", "../../etc", "--database-url", f"sqlite:///{tmp_path / 's.db'}"],
    )
    assert out.exit_code == 1 and "name:" in out.output and "allowed" in out.output


def test_the_launchpad_refuses_an_unsafe_project(tmp_path):
    resources = {
        "batch_store": BatchStoreResource(database_url=f"sqlite:///{tmp_path / 's.db'}"),
        "document_ai": DocumentAISettings(),
    }
    result = (
        dg.Definitions(jobs=[submit_document_job], resources=resources)
        .resolve_job_def("submit_document_job")
        .execute_in_process(
            run_config={
                "ops": {
                    "submit_document_job_op": {
                        "config": {
                            "name": "ok",
                            "project_id": "../up",
                            "pipeline": "document_pipeline",
                            "items": [{"content": "text"}],
                        }
                    }
                }
            },
            raise_on_error=False,
        )
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.description.startswith("invalid job: project_id:")


def test_the_drop_sensor_skips_files_whose_path_is_not_a_safe_name_or_a_known_pipeline(tmp_path):
    known = ["document_pipeline"]
    assert drop_path_problem("document_pipeline", "lab", "oct papers", known) is None
    assert "job name" in drop_path_problem("document_pipeline", "lab", "-bad", known)
    assert "project" in drop_path_problem("document_pipeline", "a..b", "x", known)
    assert "unknown pipeline" in drop_path_problem("nope", "lab", "x", known)

    folder = tmp_path / "drop" / "document_pipeline" / "lab"
    folder.mkdir(parents=True)
    (folder / "good.jsonl").write_text(json.dumps({"content": "text"}) + "\n")
    (folder / "-bad name.jsonl").write_text(json.dumps({"content": "text"}) + "\n")
    unknown = tmp_path / "drop" / "no_such_pipeline" / "lab"
    unknown.mkdir(parents=True)
    (unknown / "x.jsonl").write_text(json.dumps({"content": "text"}) + "\n")
    resources = {
        "document_ai": DocumentAISettings(drop_folder=str(tmp_path / "drop")),
        "batch_store": BatchStoreResource(database_url=f"sqlite:///{tmp_path / 's.db'}"),
    }
    defs = dg.Definitions(
        sensors=[document_items_drop_sensor], resources=resources, jobs=[submit_document_job]
    )
    sensor = defs.resolve_sensor_def("document_items_drop_sensor")
    with dg.build_sensor_context(resources=resources) as ctx:
        result = sensor(ctx)
    (request,) = result.run_requests
    assert request.run_config["ops"]["submit_document_job_op"]["config"]["name"] == "good"


def test_an_export_is_written_inside_its_folder(tmp_path):
    jobs = DocumentJobStore(BatchStore(f"sqlite:///{tmp_path / 's.db'}"))
    template = load_pipelines()["document_pipeline"]
    job = jobs.create_job(_spec(), template)
    path = export_results(jobs, job, template, tmp_path / "exports", "jsonl")
    assert path.parent == (tmp_path / "exports").resolve()
    outside = type(job)(**{**job.__dict__, "key": "../../escaped"})
    with pytest.raises(UnsafeName):
        export_results(jobs, outside, template, tmp_path / "exports", "jsonl")
    jobs.store.dispose()


def test_reference_documents_are_refused_for_a_project_that_is_not_a_safe_name(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Netherfield is an estate.")
    out = CliRunner().invoke(
        main,
        ["docs", "add-references", "../x", str(notes)]
        + ["--database-url", f"sqlite:///{tmp_path / 's.db'}"],
    )
    assert out.exit_code == 1 and "[BP-NAME] PROJECT_ID '../x' is not allowed" in out.output
