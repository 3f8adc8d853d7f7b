"""Actions analysts take from the UI: load a workbook as a cycle, decide on existing analyses.

An invalid workbook or a refused decision is final (``final_failure``): run retries would
only fail the same way twice more. Transient faults (a locked store) are retried by the
op's own retry policy, so the jobs turn off run retries of failed steps.
"""

import asyncio
from typing import Literal

import dagster as dg
from pydantic import Field

from batch_pipelines.core.errors import JobError, shorten
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.failures import (
    NO_RUN_RETRY_ON_STEP_FAILURE,
    TRANSIENT_FAULT_RETRIES,
    final_failure,
    user_errors_are_final,
)
from batch_pipelines.resources import BatchStoreResource, RiskModelerResource
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.cycle_batches import ensure_batch, store_cycle_configuration
from batch_pipelines.risk_modeling.entity_validation import delete_existing
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sample_source import create_sample_source
from batch_pipelines.risk_modeling.workbook import WorkbookInvalid, validate_workbook
from batch_pipelines.store.batch_store import JobRecord

CYCLE_TAG = "batch_pipelines/cycle"


class LoadWorkbookConfig(dg.Config):
    workbook_path: str = Field(
        description="Path of the master configuration .xlsx on the code server."
    )


@dg.op(retry_policy=TRANSIENT_FAULT_RETRIES)
def load_cycle_workbook(
    context: dg.OpExecutionContext,
    config: LoadWorkbookConfig,
    batch_store: BatchStoreResource,
    risk_modeling: RiskModelingSettings,
) -> str:
    validation = validate_workbook(config.workbook_path)
    if not validation.valid:
        raise final_failure(
            WorkbookInvalid(config.workbook_path, validation.issues),
            [str(issue) for issue in validation.issues],
        )
    with user_errors_are_final():
        cycle, _ = store_cycle_configuration(
            batch_store.get_store(), validation.configuration, source=config.workbook_path
        )
    if not risk_modeling.source_database_url:
        # Embedded default: no exposure warehouse is configured, so Data Extraction reads a
        # generated sample for this cycle's import files (production sets the URL).
        create_sample_source(risk_modeling.source_url(), validation.configuration)
        context.log.info(
            f"embedded default: sample exposure data generated at {risk_modeling.source_url()}"
        )
    context.instance.add_dynamic_partitions(CYCLES.name, [cycle])
    # The run says which cycle it loaded, so the follow-up sensor can launch that cycle.
    context.instance.add_run_tags(context.run_id, {CYCLE_TAG: cycle})
    context.log.info(f"cycle {cycle} is active with {validation.job_counts}")
    return cycle


@dg.job(
    description="Validate a master configuration workbook, register its cycle and store it.",
    tags=NO_RUN_RETRY_ON_STEP_FAILURE,
)
def load_workbook():
    load_cycle_workbook()


class AnalysisDecision(dg.Config):
    analysis_name: str
    decision: Literal["skip", "delete_and_resubmit"]


class AnalysisDecisionsConfig(dg.Config):
    cycle: str
    decisions: list[AnalysisDecision]
    batch_type: Literal["Analysis", "Grouping", "Grouping Rollup"] = Field(
        default="Analysis",
        description="Whose existing entities are decided on: analyses, or analysis groups "
        "(then each decision's analysis_name names a group).",
    )


# The reason a skip decision records on the job; a retry recognises its own skips by it.
KEPT_BY_DECISION = "analysis already exists; kept by decision"


def decided_jobs(jobs: list[JobRecord], decisions: list[AnalysisDecision]) -> dict[str, JobRecord]:
    """The job each decision is about, by key: the live (not skipped) job, or the job this
    same skip decision already skipped on an earlier try of the op.

    The op's retry policy reruns the whole op after a transient fault; counting a job it
    skipped itself as unknown would turn that fault into a false final error."""
    skip_keys = {d.analysis_name for d in decisions if d.decision == "skip"}
    found: dict[str, JobRecord] = {}
    for job in jobs:
        if not job.skipped:
            found[job.key] = job
        elif job.key in skip_keys and job.skipped_reason == KEPT_BY_DECISION:
            found.setdefault(job.key, job)
    return found


@dg.op(retry_policy=TRANSIENT_FAULT_RETRIES)
def apply_analysis_decisions(
    context: dg.OpExecutionContext,
    config: AnalysisDecisionsConfig,
    batch_store: BatchStoreResource,
    risk_modeler: RiskModelerResource,
) -> None:
    """Skip an existing analysis's (or group's) job, or delete the entity so the job submits
    afresh.

    Idempotent across the op's retries: the deletes run first (deleting what is already gone
    deletes nothing) and the skips last, and a job already skipped by this same decision
    counts as done."""
    store = batch_store.get_store()
    batch_type = BatchType(config.batch_type)
    with user_errors_are_final():
        store.require_active_cycle(config.cycle)
        batch_id = ensure_batch(store, config.cycle, batch_type)
    jobs = decided_jobs(store.list_jobs(batch_id), config.decisions)
    unknown = [d.analysis_name for d in config.decisions if d.analysis_name not in jobs]
    if unknown:
        raise final_failure(
            JobError(f"no analysis job named {shorten(unknown)} in cycle {config.cycle}"),
            [f"no analysis job named {shorten(name)}" for name in unknown],
        )
    not_pending = [
        f"analysis {shorten(d.analysis_name)} is {jobs[d.analysis_name].status}"
        for d in config.decisions
        if jobs[d.analysis_name].status != JobStatus.INITIATED
    ]
    if not_pending:
        raise final_failure(
            JobError(f"{not_pending[0]}; decisions apply to jobs not yet submitted"), not_pending
        )
    to_delete = [d.analysis_name for d in config.decisions if d.decision == "delete_and_resubmit"]
    to_skip = [
        jobs[d.analysis_name]
        for d in config.decisions
        if d.decision == "skip" and not jobs[d.analysis_name].skipped
    ]

    async def delete_all() -> None:
        async with risk_modeler.client() as client:
            for name in to_delete:
                await delete_existing(batch_type, jobs[name].configuration, client)

    if to_delete:
        asyncio.run(delete_all())
    for job in to_skip:
        store.skip_job(job.id, KEPT_BY_DECISION)
    store.activate_batch(batch_id)
    context.log.info(
        f"skipped {len(config.decisions) - len(to_delete)}, deleted {len(to_delete)} for resubmission"
    )


@dg.job(
    description="Per existing analysis or analysis group: skip its job, or delete it in the "
    "Risk Modeler and resubmit.",
    tags=NO_RUN_RETRY_ON_STEP_FAILURE,
)
def analysis_decisions():
    apply_analysis_decisions()
