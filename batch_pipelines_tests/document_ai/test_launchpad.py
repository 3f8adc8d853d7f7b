"""The launchpad's submit_document_job: the pipeline is a choice, items have one schema."""

from __future__ import annotations

import dagster as dg
import pytest

from batch_pipelines.document_ai.definitions import document_ai_definitions
from batch_pipelines.document_ai.items import ItemRecord, parse_items
from batch_pipelines.document_ai.jobs import ItemConfig
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore

TEXT = "Marie Curie studied radioactivity in Paris."


def _defs(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    defs = document_ai_definitions()
    return (
        dg.Definitions.merge(
            defs,
            dg.Definitions(
                resources={
                    "batch_store": BatchStoreResource(database_url=url),
                    "models": ModelsResource(),
                    "teams": TeamsResource(),
                }
            ),
        ),
        url,
    )


def _config(**fields) -> dict:
    return {
        "ops": {
            "submit_document_job_op": {"config": {"name": "papers", "project_id": "lab", **fields}}
        }
    }


def test_the_pipeline_is_a_choice_of_the_loaded_templates(tmp_path):
    defs, _ = _defs(tmp_path)
    job = defs.resolve_job_def("submit_document_job")
    with pytest.raises(dg.DagsterInvalidConfigError) as caught:
        job.execute_in_process(
            run_config=_config(pipeline="nope", items=[{"content": TEXT}]),
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert "pipeline not in enum type" in str(caught.value)
    op = job.graph.node_named("submit_document_job_op").definition
    choice = op.config_schema.config_type.fields["pipeline"].config_type
    assert sorted(v.config_value for v in choice.enum_values) == [
        "book_translation",
        "document_pipeline",
        "embedding_regeneration",
    ]


def test_launchpad_items_take_the_same_shape_as_item_files_text_or_content_with_metadata(
    tmp_path,
):
    assert issubclass(ItemConfig, ItemRecord)
    defs, url = _defs(tmp_path)
    result = defs.resolve_job_def("submit_document_job").execute_in_process(
        run_config=_config(
            pipeline="document_pipeline",
            items=[
                {"text": TEXT, "metadata": {"title": "Curie", "year": 1898}},
                {"content": TEXT + " Again."},
            ],
        ),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    jobs = DocumentJobStore(BatchStore(url))
    (job,), _ = jobs.list_jobs()
    stored = jobs.items(job.batch_id)
    assert stored[0]["input"] == {"content": TEXT, "metadata": {"title": "Curie", "year": 1898}}
    # the same record in a file's shape gives the same item
    record = ItemRecord(text=TEXT, metadata={"title": "Curie", "year": 1898}).record()
    assert parse_items([record])[0].metadata == {"title": "Curie", "year": 1898}
    jobs.store.dispose()
