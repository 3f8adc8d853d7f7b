"""One asset per phase of each pipeline template, partitioned by document job.

A pipeline ``book_translation`` with phases text_cleanup -> xml_tagging -> translation
becomes the assets ``document_ai/book_translation/text_cleanup`` and so on, each depending
on the phase before it, partitioned by ``book_translation_jobs`` (one dynamic partition
per document job), and the asset job ``book_translation_job`` that materializes the chain
for one job. Items are not partitions: a phase materialization runs every item not yet
done in that phase inside the run (see ``runner.py``).

A phase that stops early (the job was paused, cancelled or hit its budget) materializes
nothing, so the phases after it are skipped and the run ends without marking the work done.
"""

import asyncio
from decimal import Decimal
from typing import Any

import dagster as dg

from batch_pipelines.clients.teams import adaptive_card, notify_batch
from batch_pipelines.document_ai.batch_jobs import DocJobStatus
from batch_pipelines.document_ai.pipelines import PhaseSpec, PipelineTemplate
from batch_pipelines.document_ai.reports import job_status
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.runner import PhaseReport, RunnerOptions
from batch_pipelines.document_ai.store import DocumentJob, DocumentJobStore
from batch_pipelines.metadata import (
    BatchOutcome,
    standard_check_results,
    standard_check_specs,
    standard_metadata,
)
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource

GROUP = "document_ai"
CONCURRENCY_TAG = {"batch_pipelines/concurrency_group": "document_ai"}
# One run at a time per document job (dagster.yaml limits this tag per unique value).
JOB_TAG = "batch_pipelines/document_job"


def partitions_name(pipeline: str) -> str:
    return f"{pipeline}_jobs"


def partitions_for(template: PipelineTemplate) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=partitions_name(template.name))


def remove_job_partition(instance: dg.DagsterInstance, pipeline: str, job_key: str) -> str | None:
    """Remove a deleted job's partition of its pipeline; the partitions' name if one was removed."""
    name = partitions_name(pipeline)
    if not instance.has_dynamic_partition(name, job_key):
        return None
    instance.delete_dynamic_partition(name, job_key)
    return name


def job_name_for(pipeline: str) -> str:
    return f"{pipeline}_job"


def phase_key(template: PipelineTemplate, phase: PhaseSpec) -> dg.AssetKey:
    return dg.AssetKey([GROUP, template.name, phase.name])


def phase_outcome(
    report: PhaseReport, job: DocumentJob, status: dict[str, Any], cost: Decimal, tokens: int
) -> BatchOutcome:
    """The phase in the shared vocabulary: its items are its units, as they stand after
    this run (done by it or before it); ``cost`` and ``tokens`` are the phase's ledger.
    Reconciled when every item of the job completed the phase."""
    phase_totals = next(p for p in status["phases"] if p["phase"] == report.phase)
    completed, failed = phase_totals["completed"], phase_totals["failed"]
    p95 = report.latency_p95()
    return BatchOutcome(
        units_total=report.items_total,
        units_succeeded=completed,
        units_failed=failed,
        cost=cost,
        tokens=tokens,
        duration_seconds=report.duration_seconds,
        batch_id=job.batch_id,
        batch_status=status["status"],
        reconciled=not report.stopped and failed == 0 and completed == report.items_total,
        reason=(
            f"phase {report.phase}: {completed} of {report.items_total} items completed, "
            f"{failed} failed" + (f", stopped: {report.stopped}" if report.stopped else "")
        ),
        p95_latency_ms=p95 * 1000 if p95 is not None else None,
    )


def _metadata(
    outcome: BatchOutcome, report: PhaseReport, job: DocumentJob, status: dict[str, Any]
) -> dict[str, Any]:
    mean = report.latency_mean()
    return {
        **standard_metadata(outcome),
        "job": job.key,
        "job_status_reason": status["status_reason"] or "",
        "stopped": report.stopped or "",
        "cost_budget": str(job.options.cost_budget) if job.options.cost_budget is not None else "",
        "model": report.model,
        "task_type": report.task_type,
        "items_processed_this_run": report.processed,
        "items_done_before_this_run": report.done_before,
        "success_rate_this_run": report.success_rate,
        "cost_this_run": float(report.cost),
        "tokens_this_run": report.tokens,
        "job_cost_total": float(Decimal(status["cost"])),
        "latency_mean_ms": round(mean * 1000, 1) if mean is not None else None,
        "validation_scores": dg.MetadataValue.json(report.score_distribution()),
        "checkpoints_written": report.checkpoints,
    }


def _outcome(
    jobs: DocumentJobStore, report: PhaseReport, job: DocumentJob, status: dict[str, Any]
) -> BatchOutcome:
    cost, tokens = jobs.store.ledger_total(job.batch_id, phase=report.phase)
    return phase_outcome(report, job, status, cost, tokens)


def build_phase_asset(
    template: PipelineTemplate, index: int, partitions: dg.DynamicPartitionsDefinition
) -> dg.AssetsDefinition:
    phase = template.phases[index]
    previous = template.phases[index - 1] if index else None
    last = index == len(template.phases) - 1

    key = phase_key(template, phase)

    # A multi-asset of one, subsettable, so that a phase which stops early or does not run
    # (the job paused, cancelled, at its budget) yields neither the asset nor its checks.
    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            dg.AssetSpec(
                key,
                deps=[phase_key(template, previous)] if previous else [],
                group_name=f"{GROUP}_{template.name}",
                kinds={"ai"},
                description=f"Phase {index + 1} of {len(template.phases)} of pipeline "
                f"{template.name}: {phase.task_type}"
                + (" with retrieval" if phase.use_rag else "")
                + (
                    f", validated (min score {phase.validation.min_score})"
                    if phase.validation.enabled
                    else ""
                ),
                skippable=True,
            )
        ],
        partitions_def=partitions,
        check_specs=standard_check_specs(key),
        can_subset=True,
        op_tags=CONCURRENCY_TAG,
    )
    def _phase(
        context: dg.AssetExecutionContext,
        batch_store: BatchStoreResource,
        models: ModelsResource,
        teams: TeamsResource,
        document_ai: DocumentAISettings,
    ):
        jobs = DocumentJobStore(batch_store.get_store())
        job = jobs.get_job(context.partition_key)
        # A job with its own phases runs its phase at this asset's position.
        runs = job.template(template)
        job_phase = runs.phases[index]
        if job.status == DocJobStatus.FAILED and context.run.tags.get("dagster/retry_number"):
            # Dagster retried the run after a failure: carry on from the last checkpoint.
            job = jobs.apply_action(job.id, "resume", reason="automatic run retry", new_run=False)
        if job.status != DocJobStatus.RUNNING:
            context.log.warning(f"job {job.key} is {job.status}: phase {job_phase.name} not run")
            return

        async def run() -> PhaseReport:
            async with models.client() as client:
                runner = document_ai.job_runner(
                    jobs,
                    job,
                    template,
                    client,
                    options=RunnerOptions(
                        lease_seconds=document_ai.lease_seconds,
                        control_check_seconds=document_ai.control_check_seconds,
                        validator_model=document_ai.validator_model,
                    ),
                )
                # A crashed predecessor's claim runs out after one lease.
                runner.claim(wait_seconds=document_ai.lease_seconds + 5)
                try:
                    report = await runner.run_phase(
                        job_phase.name,
                        on_progress=lambda r: context.log.info(
                            f"{job_phase.name}: {r.done_before + r.processed}/{r.items_total} items, cost {r.cost}"
                        ),
                    )
                    if not report.stopped and last:
                        runner.finish()
                    return report
                except Exception as exc:
                    runner.fail(exc)
                    raise
                finally:
                    runner.release()

        report = asyncio.run(run())
        job = jobs.get_job(job.id)
        if report.stopped == "budget":
            card = budget_card(job, Decimal(job_status(jobs, job, runs)["cost"]))
            delivered = asyncio.run(notify_batch(teams.client(), card))
            context.log.warning(
                f"job {job.key} paused at its cost budget; Teams notified={delivered}"
            )
        status = job_status(jobs, job, runs)
        if report.stopped:
            context.log.warning(
                f"job {job.key} stopped in phase {job_phase.name}: {report.stopped} ({job.status_reason or ''})"
            )
            # Not materialized (the phase is not done), but the stop and its reason show.
            context.log_event(phase_event(template, jobs, job, report, status))
            return
        outcome = _outcome(jobs, report, job, status)
        selected = context.selected_asset_check_keys
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_metadata(outcome, report, job, status),
            check_results=[
                r
                for r in standard_check_results(outcome, job.key, asset_key=key)
                if dg.AssetCheckKey(key, r.check_name or "") in selected
            ],
        )

    return _phase


def phase_event(
    template: PipelineTemplate,
    jobs: DocumentJobStore,
    job: DocumentJob,
    report: PhaseReport,
    status: dict[str, Any],
    *,
    runless: bool = False,
) -> dg.AssetMaterialization | dg.AssetObservation:
    """What a phase's work is recorded as on its asset, in a run or outside one.

    A phase that went through every item it had is materialized; one that stopped early
    (paused, cancelled, budget reached) is observed, so the job's state - a budget pause and
    its reason - shows on the asset without marking the partition done. Same metadata as
    a run's, plus ``worked_by`` for work done outside Dagster (``docs ... --run``).
    """
    metadata = _metadata(_outcome(jobs, report, job, status), report, job, status)
    if runless:
        metadata["worked_by"] = "batch-pipelines docs --run (outside a Dagster run)"
    # The asset at the phase's position (a job with its own phases runs them one for one).
    position = [p.name for p in job.template(template).phases].index(report.phase)
    key = phase_key(template, template.phases[position])
    if report.stopped:
        return dg.AssetObservation(asset_key=key, partition=job.key, metadata=metadata)
    return dg.AssetMaterialization(asset_key=key, partition=job.key, metadata=metadata)


def record_runless_work(
    instance: dg.DagsterInstance,
    jobs: DocumentJobStore,
    template: PipelineTemplate,
    job: DocumentJob,
    reports: list[PhaseReport],
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """Record on the phase assets the work done outside a run (``docs ... --run``): the
    job's partition is added and each phase reported, so the UI shows the partition
    materialized (or the job's stop observed) instead of Missing."""
    name = partitions_for(template).name
    if not instance.has_dynamic_partition(name, job.key):
        instance.add_dynamic_partitions(name, [job.key])
    status = job_status(jobs, job, job.template(template))
    events = [phase_event(template, jobs, job, r, status, runless=True) for r in reports]
    for event in events:
        instance.report_runless_asset_event(event)
    for report, event in zip(reports, events, strict=True):
        if isinstance(event, dg.AssetMaterialization):
            # The standard checks too, as a run would report them with the materialization.
            outcome = _outcome(jobs, report, job, status)
            for result in standard_check_results(outcome, job.key):
                instance.report_runless_asset_event(
                    dg.AssetCheckEvaluation(
                        asset_key=event.asset_key,
                        check_name=result.check_name or "",
                        passed=result.passed,
                        metadata=result.metadata,
                        severity=result.severity,
                        description=result.description,
                    )
                )
    return events


def budget_card(job: DocumentJob, spent: Decimal) -> dict[str, Any]:
    return adaptive_card(
        f"Document job {job.key} paused: cost budget reached",
        [
            ("pipeline", job.pipeline),
            ("project", job.project_id),
            ("budget", str(job.options.cost_budget)),
            ("spent", str(spent)),
        ],
        text="Raise the budget or resume the job to go on from its last checkpoint.",
    )


def build_pipeline_definitions(
    template: PipelineTemplate,
) -> tuple[list[dg.AssetsDefinition], Any, dg.DynamicPartitionsDefinition]:
    partitions = partitions_for(template)
    assets = [build_phase_asset(template, i, partitions) for i in range(len(template.phases))]
    job = dg.define_asset_job(
        job_name_for(template.name),
        selection=dg.AssetSelection.assets(*assets),
        partitions_def=partitions,
        description=f"Run a document job through pipeline {template.name} "
        f"({' -> '.join(p.name for p in template.phases)}).",
        # Items run concurrently inside the step; separate processes per phase buy nothing.
        executor_def=dg.in_process_executor,
        tags={**CONCURRENCY_TAG},
    )
    return assets, job, partitions
