"""The actions people take on document jobs, as Dagster jobs launched with typed config.

submit_document_job (from a file or items typed in the launchpad), start, pause, resume,
cancel, delete, export results, and add reference documents for retrieval. Each action's
rule is the pure lifecycle of ``batch_jobs``; an illegal one fails the run with the rule in
words (never retried: a retry cannot make it legal). Runs of the pipelines themselves are
launched by the ``document_job_launcher`` sensor when a job is RUNNING.
"""

import asyncio
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, ValidationError

from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.core.names import check_name
from batch_pipelines.document_ai.assets import partitions_for, remove_job_partition
from batch_pipelines.document_ai.batch_jobs import (
    BatchJobSpec,
    DocJobStatus,
    JobOptions,
    check_pipeline,
)
from batch_pipelines.document_ai.exports import export_results
from batch_pipelines.document_ai.items import ItemRecord, load_items, parse_items
from batch_pipelines.document_ai.pipelines import describe_validation_error
from batch_pipelines.document_ai.rag import ReferenceLibrary
from batch_pipelines.document_ai.reports import job_status
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource, ModelsResource

NO_RETRY = {"dagster/max_retries": "0"}


def _failure(exc: BatchPipelinesError) -> dg.Failure:
    return dg.Failure(
        description=exc.message,
        metadata={"code": exc.code, "details": dg.MetadataValue.json(exc.details or {})},
        allow_retries=False,
    )


class ItemConfig(dg.Config, ItemRecord):
    """An item typed in the launchpad: the one item schema (``items.ItemRecord``), as config."""


class SubmitDocumentJobConfig(dg.Config):
    name: str = Field(description="A name for the job (shown in lists and the partition key).")
    project_id: str
    pipeline: str = Field(description="A pipeline template name, e.g. document_pipeline.")
    items_path: str = Field(
        default="", description="A .jsonl, .csv or .xlsx file of items; or give items."
    )
    items: list[ItemConfig] = Field(default_factory=list)
    concurrency: int = 5
    checkpoint_frequency: int = 10
    auto_start: bool = True
    cost_budget: float | None = None
    target_language: str | None = None
    phases: list[dict[str, Any]] | None = Field(
        default=None,
        description="The job's own phases ({name, task_type, model, use_rag, validation: "
        "{enabled, min_score, max_attempts}}), replacing the pipeline's one for one.",
    )


def _submit(
    context: dg.OpExecutionContext,
    config: SubmitDocumentJobConfig,
    batch_store: BatchStoreResource,
    document_ai: DocumentAISettings,
) -> None:
    """Validate every item, then store the job; with auto start its run is launched next."""
    pipeline = config.pipeline.value if isinstance(config.pipeline, Enum) else config.pipeline
    try:
        pipelines = document_ai.pipelines()
        if config.items_path and config.items:
            raise _failure(BatchPipelinesError("give items_path or items, not both"))
        if config.items_path:
            items = load_items(config.items_path)
        else:
            items = parse_items([i.record() for i in config.items], source="items")
        spec = BatchJobSpec(
            name=config.name,
            project_id=config.project_id,
            pipeline=pipeline,
            items=items,
            options=JobOptions(
                concurrency=config.concurrency,
                checkpoint_frequency=config.checkpoint_frequency,
                auto_start=config.auto_start,
                cost_budget=config.cost_budget,
                target_language=config.target_language,
            ),
            phases=config.phases,
        )
        check_pipeline(spec, pipelines)
        jobs = DocumentJobStore(batch_store.get_store())
        job = jobs.create_job(spec, pipelines[spec.pipeline])
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise dg.Failure(description=f"invalid job: {problems}", allow_retries=False) from None
    context.instance.add_dynamic_partitions(partitions_for(pipelines[job.pipeline]).name, [job.key])
    context.log.info(f"document job {job.key} stored with {job.item_count} items: {job.status}")
    context.add_output_metadata(
        {"job": job.key, "status": job.status.value, "items": job.item_count}
    )


SUBMIT_DESCRIPTION = "Create a document job from a file of items or items typed here."


def build_submit_document_job(pipeline_names: Sequence[str] = ()) -> dg.JobDefinition:
    """``submit_document_job`` with ``pipeline`` a choice of ``pipeline_names`` in the
    launchpad (an Enum built from the templates the code location loaded); without names,
    a free string checked against the templates when the job runs."""
    if not pipeline_names:
        config_class = SubmitDocumentJobConfig
    else:
        names = Enum("PipelineName", {n: n for n in sorted(pipeline_names)})
        config_class = type(
            "SubmitDocumentJobConfig",
            (SubmitDocumentJobConfig,),
            {
                "__annotations__": {"pipeline": names},
                "pipeline": Field(description="The pipeline template the job runs."),
                "__module__": __name__,
            },
        )

    def submit_document_job_op(
        context: dg.OpExecutionContext,
        config,
        batch_store: BatchStoreResource,
        document_ai: DocumentAISettings,
    ) -> None:
        _submit(context, config, batch_store, document_ai)

    # The config's class is only known here: annotate it before Dagster reads the signature.
    submit_document_job_op.__annotations__["config"] = config_class
    op = dg.op(name="submit_document_job_op", tags=NO_RETRY, description=_submit.__doc__)(
        submit_document_job_op
    )

    @dg.job(name="submit_document_job", tags=NO_RETRY, description=SUBMIT_DESCRIPTION)
    def submit_document_job():
        op()

    return submit_document_job


# With a free-string pipeline (no template is read at import); the code location builds its
# own with the pipeline a choice of the loaded templates (definitions.py).
submit_document_job = build_submit_document_job()


class DocumentJobActionConfig(dg.Config):
    job: str = Field(description="The job's key (its partition key) or id.")
    reason: str = ""


class ResumeDocumentJobConfig(DocumentJobActionConfig):
    cost_budget: float | None = Field(
        default=None, description="A new cost budget (e.g. after a budget pause)."
    )


def _apply(
    context, batch_store: BatchStoreResource, job_ref: str, action: str, reason: str
) -> None:
    jobs = DocumentJobStore(batch_store.get_store())
    try:
        job = jobs.apply_action(job_ref, action, reason=reason or None)
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    context.log.info(f"document job {job.key}: {action} -> {job.status}")
    context.add_output_metadata({"job": job.key, "status": job.status.value})


@dg.op(tags=NO_RETRY)
def start_document_job_op(
    context: dg.OpExecutionContext, config: DocumentJobActionConfig, batch_store: BatchStoreResource
):
    _apply(context, batch_store, config.job, "start", config.reason)


@dg.op(tags=NO_RETRY)
def pause_document_job_op(
    context: dg.OpExecutionContext, config: DocumentJobActionConfig, batch_store: BatchStoreResource
):
    _apply(context, batch_store, config.job, "pause", config.reason)


@dg.op(tags=NO_RETRY)
def cancel_document_job_op(
    context: dg.OpExecutionContext, config: DocumentJobActionConfig, batch_store: BatchStoreResource
):
    _apply(context, batch_store, config.job, "cancel", config.reason)


@dg.op(tags=NO_RETRY)
def resume_document_job_op(
    context: dg.OpExecutionContext, config: ResumeDocumentJobConfig, batch_store: BatchStoreResource
):
    jobs = DocumentJobStore(batch_store.get_store())
    try:
        if config.cost_budget is not None:
            jobs.set_cost_budget(config.job, config.cost_budget)
        # A job whose worker was killed is still RUNNING: failed with the reason first, so
        # it is resumable at once.
        died = jobs.fail_if_worker_died(config.job)
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    if died.status == DocJobStatus.FAILED and died.status_reason:
        context.log.warning(f"document job {died.key}: {died.status_reason}")
    _apply(context, batch_store, config.job, "resume", config.reason)


@dg.op(tags=NO_RETRY)
def delete_document_job_op(
    context: dg.OpExecutionContext, config: DocumentJobActionConfig, batch_store: BatchStoreResource
):
    jobs = DocumentJobStore(batch_store.get_store())
    try:
        job = jobs.delete_job(config.job)
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    remove_job_partition(context.instance, job.pipeline, job.key)
    context.log.info(f"document job {job.key} deleted with its items, results and ledger entries")


@dg.job(
    tags=NO_RETRY,
    description="Start a PENDING document job (its run is launched by the launcher sensor).",
)
def start_document_job():
    start_document_job_op()


@dg.job(
    tags=NO_RETRY,
    description="Pause a RUNNING document job: in-flight items finish, then its run stops.",
)
def pause_document_job():
    pause_document_job_op()


@dg.job(
    tags=NO_RETRY, description="Resume a PAUSED or FAILED document job from its last checkpoint."
)
def resume_document_job():
    resume_document_job_op()


@dg.job(tags=NO_RETRY, description="Cancel a document job (unless COMPLETED or CANCELLED).")
def cancel_document_job():
    cancel_document_job_op()


@dg.job(
    tags=NO_RETRY,
    description="Delete a document job that is not RUNNING, with its items, results and cost.",
)
def delete_document_job():
    delete_document_job_op()


class ExportConfig(dg.Config):
    job: str
    format: str = Field(default="jsonl", description="jsonl or xlsx")


@dg.op(tags=NO_RETRY)
def export_document_job_results_op(
    context: dg.OpExecutionContext,
    config: ExportConfig,
    batch_store: BatchStoreResource,
    document_ai: DocumentAISettings,
):
    jobs = DocumentJobStore(batch_store.get_store())
    try:
        job = jobs.get_job(config.job)
        template = job.template(document_ai.pipelines()[job.pipeline])
        path = export_results(jobs, job, template, Path(document_ai.exports_dir), config.format)
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    status = job_status(jobs, job, template)
    context.log.info(f"results of {job.key} written to {path}")
    context.add_output_metadata(
        {"path": str(path), "items": job.item_count, "job_status": status["status"]}
    )


@dg.job(tags=NO_RETRY, description="Write a document job's per-item results to JSONL or XLSX.")
def export_document_job_results():
    export_document_job_results_op()


class ReferenceDocumentsConfig(dg.Config):
    project_id: str
    paths: list[str] = Field(description="Text files (.txt, .md) to index for retrieval.")


@dg.op(tags=NO_RETRY)
def add_reference_documents_op(
    context: dg.OpExecutionContext,
    config: ReferenceDocumentsConfig,
    batch_store: BatchStoreResource,
    models: ModelsResource,
):
    try:
        # The same project names as jobs', so a job's use_rag phases find these documents.
        check_name(config.project_id, "project_id")
    except BatchPipelinesError as exc:
        raise _failure(exc) from None
    documents = {}
    for raw in config.paths:
        path = Path(raw)
        try:
            documents[path.name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise dg.Failure(
                description=f"{raw}: cannot be read ({type(exc).__name__})", allow_retries=False
            ) from None

    async def add() -> dict[str, int]:
        async with models.client() as client:
            library = ReferenceLibrary(
                batch_store.get_store().engine,
                client,
                on_cost=batch_store.get_store().record_cost_entries,
            )
            return {
                name: await library.add_document(config.project_id, name, text)
                for name, text in documents.items()
            }

    added = asyncio.run(add())
    context.log.info(f"project {config.project_id}: indexed {added}")
    context.add_output_metadata(
        {"project_id": config.project_id, "passages": dg.MetadataValue.json(added)}
    )


@dg.job(tags=NO_RETRY, description="Index reference documents of a project for use_rag phases.")
def add_reference_documents():
    add_reference_documents_op()


DOCUMENT_AI_JOBS = [
    submit_document_job,
    start_document_job,
    pause_document_job,
    resume_document_job,
    cancel_document_job,
    delete_document_job,
    export_document_job_results,
    add_reference_documents,
]
