"""Actions analysts take from the UI: load a workbook as a cycle, decide on existing analyses."""

import asyncio
from typing import Literal

import dagster as dg
from pydantic import Field

from batch_pipelines.core.errors import ConfigurationError, JobError
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.resources import BatchStoreResource, RiskModelerResource
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.cycle_batches import ensure_batch, store_cycle_configuration
from batch_pipelines.risk_modeling.entity_validation import delete_existing
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sample_source import create_sample_source
from batch_pipelines.risk_modeling.workbook import validate_workbook

CYCLE_TAG = "batch_pipelines/cycle"


class LoadWorkbookConfig(dg.Config):
    workbook_path: str = Field(
        description="Path of the master configuration .xlsx on the code server."
    )


@dg.op
def load_cycle_workbook(
    context: dg.OpExecutionContext,
    config: LoadWorkbookConfig,
    batch_store: BatchStoreResource,
    risk_modeling: RiskModelingSettings,
) -> str:
    validation = validate_workbook(config.workbook_path)
    if not validation.valid:
        listing = "\n".join(f"- {issue}" for issue in validation.issues[:100])
        raise ConfigurationError(
            f"{config.workbook_path}: {len(validation.issues)} errors, nothing stored\n{listing}"
        )
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


@dg.job(description="Validate a master configuration workbook, register its cycle and store it.")
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


@dg.op
def apply_analysis_decisions(
    context: dg.OpExecutionContext,
    config: AnalysisDecisionsConfig,
    batch_store: BatchStoreResource,
    risk_modeler: RiskModelerResource,
) -> None:
    """Skip an existing analysis's (or group's) job, or delete the entity so the job submits
    afresh."""
    store = batch_store.get_store()
    store.require_active_cycle(config.cycle)
    batch_type = BatchType(config.batch_type)
    batch_id = ensure_batch(store, config.cycle, batch_type)
    jobs = {j.key: j for j in store.list_jobs(batch_id, skipped=False)}
    unknown = [d.analysis_name for d in config.decisions if d.analysis_name not in jobs]
    if unknown:
        raise JobError(f"no analysis job named {unknown} in cycle {config.cycle}")
    to_delete = []
    for d in config.decisions:
        job = jobs[d.analysis_name]
        if job.status != JobStatus.INITIATED:
            raise JobError(
                f"analysis {d.analysis_name} is {job.status}; decisions apply to jobs not yet submitted"
            )
        if d.decision == "skip":
            store.skip_job(job.id, "analysis already exists; kept by decision")
        else:
            to_delete.append(d.analysis_name)

    async def delete_all() -> None:
        async with risk_modeler.client() as client:
            for name in to_delete:
                await delete_existing(batch_type, jobs[name].configuration, client)

    if to_delete:
        asyncio.run(delete_all())
    store.activate_batch(batch_id)
    context.log.info(
        f"skipped {len(config.decisions) - len(to_delete)}, deleted {len(to_delete)} for resubmission"
    )


@dg.job(
    description="Per existing analysis or analysis group: skip its job, or delete it in the "
    "Risk Modeler and resubmit."
)
def analysis_decisions():
    apply_analysis_decisions()
