"""Work done outside a Dagster run (`docs ... --run`) recorded on the phase assets, phase by
phase, and records a kill left out made up later.

A worker in a terminal records each phase on its asset as soon as the phase ends (before
the next one starts, and the last one before the job is completed), so a kill loses at most
the record of the phase in flight. A phase lacking its record is made up later: by the
worker that resumes the job (each phase already done reports again, with nothing
processed), by the launcher when it completes a settled job, and by `docs status` for a
COMPLETED job. No phase is materialized twice for a job: the instance's materializations of
the partition are checked first.
"""

from __future__ import annotations

import dagster as dg

from batch_pipelines.document_ai.assets import phase_key, record_runless_work
from batch_pipelines.document_ai.batch_jobs import DocJobStatus
from batch_pipelines.document_ai.pipelines import PipelineTemplate
from batch_pipelines.document_ai.runner import PhaseReport
from batch_pipelines.document_ai.store import DocumentJob, DocumentJobStore


def needs_record(*, stopped: bool, already_materialized: bool) -> bool:
    """Whether a phase's report is recorded: a stop always shows (an observation); a
    finished phase is materialized once per job."""
    return stopped or not already_materialized


def _asset_of(template: PipelineTemplate, job: DocumentJob, phase: str) -> dg.AssetKey:
    """The asset at the phase's position (a job with its own phases runs them one for one)."""
    position = [p.name for p in job.template(template).phases].index(phase)
    return phase_key(template, template.phases[position])


def is_materialized(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> bool:
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    )
    return bool(found.records)


def record_phase(
    instance: dg.DagsterInstance,
    jobs: DocumentJobStore,
    template: PipelineTemplate,
    job: DocumentJob,
    report: PhaseReport,
) -> bool:
    """Record one phase's work on its asset unless it is already materialized for the job;
    whether it was recorded."""
    done = is_materialized(instance, _asset_of(template, job, report.phase), job.key)
    if not needs_record(stopped=bool(report.stopped), already_materialized=done):
        return False
    record_runless_work(instance, jobs, template, jobs.get_job(job.id), [report])
    return True


def record_missing_phases(
    instance: dg.DagsterInstance,
    jobs: DocumentJobStore,
    template: PipelineTemplate,
    job: DocumentJob,
) -> list[str]:
    """Materialize every phase of a COMPLETED job that has no materialization for its
    partition (its worker was killed before recording it); the phases recorded.

    The metadata is the job's totals as stored (``items_processed_this_run`` 0: what the
    lost record's run did is not known any more).
    """
    if job.status != DocJobStatus.COMPLETED:
        return []
    phases = job.template(template).phases
    counts = jobs.phase_counts(job.batch_id)
    missing = [
        PhaseReport(
            phase=spec.name,
            task_type=str(spec.task_type),
            model=spec.model or "",
            items_total=job.item_count,
            done_before=sum(counts.get(spec.name, {}).values()),
        )
        for spec in phases
        if not is_materialized(instance, _asset_of(template, job, spec.name), job.key)
    ]
    if missing:
        record_runless_work(instance, jobs, template, job, missing)
    return [r.phase for r in missing]
