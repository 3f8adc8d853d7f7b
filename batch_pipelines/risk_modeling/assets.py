"""One asset per batch type, partitioned by cycle, in the order the work depends on.

Materializing a partition runs that batch type of that cycle to a settled state (see
``cycle_batches.materialize_batch_type``) and reports the standard batch metadata (a unit is
a job; ``metadata.standard_metadata``) with the reconciliation and a job table beside it,
and the standard checks (``reconciled_completed`` blocking the next batch type) plus a clean
validation.
"""

import asyncio
from pathlib import Path
from typing import Any

import dagster as dg

from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.engine.executor import EngineOptions
from batch_pipelines.failures import (
    NO_RUN_RETRY_ON_STEP_FAILURE,
    USER_ERRORS,
    final_failure,
    refuse_run_retries,
)
from batch_pipelines.metadata import (
    ERROR_CHARS,
    BatchOutcome,
    metadata_table,
    standard_check_results,
    standard_check_specs,
    standard_metadata,
)
from batch_pipelines.resources import BatchStoreResource, RiskModelerResource, TeamsResource
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.cycle_batches import (
    AnalysesAwaitDecision,
    BatchValidationFailed,
    materialize_batch_type,
)
from batch_pipelines.risk_modeling.notifications import (
    NOTIFY_ON,
    describe_notification,
    notify_failed_batch,
)
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.resources import RiskModelingSettings

GROUP = "risk_modeling"
CONCURRENCY_TAG = {"batch_pipelines/concurrency_group": "risk_modeling"}
JOB_TABLE_ROWS = 500


def asset_key(batch_type: BatchType) -> dg.AssetKey:
    return dg.AssetKey([GROUP, batch_type.asset_name])


def _job_table(jobs) -> dg.TableMetadataValue:
    return metadata_table(
        [("job_id", "int"), ("key", "string"), ("status", "string"), ("skipped", "bool"),
         ("workflow_id", "string"), ("error", "string")],
        (
            {
                "job_id": j.id,
                "key": j.key,
                "status": j.status.value,
                "skipped": j.skipped,
                "workflow_id": j.workflow_id or "",
                "error": (j.last_error or "")[:ERROR_CHARS],
            }
            for j in jobs[:JOB_TABLE_ROWS]
        ),
    )  # fmt: skip


def build_batch_asset(batch_type: BatchType, upstream: BatchType | None) -> dg.AssetsDefinition:
    key = asset_key(batch_type)
    validation_check = dg.AssetCheckSpec(
        "validation_clean", asset=key, description="No validation error before submission."
    )

    @dg.asset(
        key=key,
        partitions_def=CYCLES,
        deps=[asset_key(upstream)] if upstream else [],
        group_name=GROUP,
        kinds={"python"},
        tags={"execution": batch_type.execution},
        op_tags=CONCURRENCY_TAG,
        pool="risk_modeler",
        # Blocking: the next batch type of the cycle does not start on an unsettled or failed one.
        check_specs=[validation_check, *standard_check_specs(key, reconciled_blocking=True)],
        description=f"The cycle's {batch_type.value} batch ({batch_type.execution}), submitted, tracked and reconciled.",
    )
    def _batch_asset(
        context: dg.AssetExecutionContext,
        batch_store: BatchStoreResource,
        risk_modeler: RiskModelerResource,
        teams: TeamsResource,
        risk_modeling: RiskModelingSettings,
    ) -> dg.MaterializeResult:
        store = batch_store.get_store()
        cycle = context.partition_key
        options = EngineOptions(
            concurrency=risk_modeling.concurrency,
            poll_interval_seconds=risk_modeling.poll_interval_seconds,
            poll_max_interval_seconds=max(risk_modeling.poll_interval_seconds * 8, 5.0),
        )

        async def run() -> Any:
            async with risk_modeler.client() as client:
                ctx = HandlerContext(
                    client=client,
                    cycle=cycle,
                    data_dir=Path(risk_modeling.data_dir),
                    source_database_url=risk_modeling.source_url(),
                    databridge_url=risk_modeling.databridge(risk_modeler),
                )
                return await materialize_batch_type(
                    store,
                    ctx,
                    batch_type,
                    options=options,
                    on_progress=lambda report: context.log.info(report.message()),
                    on_resubmitted=lambda ids: context.log.info(
                        f"resubmitted FAILED jobs as new jobs {ids}"
                    ),
                )

        try:
            outcome = asyncio.run(run())
        except BatchValidationFailed as exc:
            refuse_run_retries(context)
            errors = exc.details.get("errors", [])
            raise dg.Failure(
                description=f"{exc.message}\n" + "\n".join(f"- {e}" for e in errors[:50]),
                metadata={
                    "validation_errors": dg.MetadataValue.json(errors),
                    "batch_id": dg.MetadataValue.text(str(exc.details.get("batch_id") or "")),
                },
                allow_retries=False,  # a retry cannot fix the configuration or the service's state
            ) from None
        except AnalysesAwaitDecision as exc:
            refuse_run_retries(context)
            existing = exc.details.get("existing", [])
            raise dg.Failure(
                description=f"{exc.message}:\n" + "\n".join(f"- {name}" for name in existing[:100]),
                metadata={
                    "existing_analyses": dg.MetadataValue.json(existing),
                    "batch_id": dg.MetadataValue.text(str(exc.details.get("batch_id") or "")),
                },
                allow_retries=False,
            ) from None
        except USER_ERRORS as exc:
            # An archived cycle, a cancelled batch, a missing configuration: final too.
            refuse_run_retries(context)
            raise final_failure(exc, [exc.message]) from None

        result = outcome.run
        rec = result.reconciliation
        summary = rec.summary
        if result.status in NOTIFY_ON:
            # Once per failure: the failed_batch_notifications sensor skips what this sent
            # (and may have sent it first: the log says who did).
            notify_failed_batch(
                store,
                teams.client(),
                outcome.batch_id,
                dagster_url=risk_modeling.dagster_url,
                run_id=context.run_id,
            )
            context.log.warning(
                f"batch {outcome.batch_id} {result.status}: Teams card "
                + describe_notification(store, outcome.batch_id)
            )

        jobs = store.list_jobs(outcome.batch_id)
        cost, tokens = store.ledger_total(outcome.batch_id)
        counts = result.counts
        standard = BatchOutcome(
            units_total=summary.total_jobs,
            units_succeeded=counts.get("FINISHED", 0),
            units_failed=counts.get("FAILED", 0) + counts.get("ERROR", 0),
            # Skipped jobs: attempts a resubmission replaced, and jobs skipped by configuration.
            units_skipped=counts.get("SKIPPED", 0),
            cost=cost,
            tokens=tokens,
            duration_seconds=result.duration_seconds,
            batch_id=outcome.batch_id,
            batch_status=result.status.value,
            reconciled=rec.status == BatchStatus.COMPLETED,
            reason=rec.reason,
        )
        metadata: dict[str, Any] = {
            **standard_metadata(standard),
            "reconciliation_status": rec.status.value,
            "reconciliation_reason": rec.reason,
            "reconciliation_summary": dg.MetadataValue.json(rec.to_dict()),
            "jobs_error": counts.get("ERROR", 0),
            "jobs_cancelled": counts.get("CANCELLED", 0),
            "jobs_submitted_this_run": result.submitted,
            "jobs_resubmitted_this_run": len(outcome.resubmitted_job_ids),
            "jobs_validated": outcome.validated_jobs,
            "jobs": _job_table(jobs),
        }
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="validation_clean",
                    passed=True,
                    metadata={
                        "jobs_validated": outcome.validated_jobs,
                        "partition": dg.MetadataValue.text(cycle),
                    },
                ),
                *standard_check_results(standard, cycle),
            ],
        )

    return _batch_asset


def build_batch_assets() -> list[dg.AssetsDefinition]:
    assets = []
    previous: BatchType | None = None
    for batch_type in BATCH_TYPE_ORDER:
        assets.append(build_batch_asset(batch_type, previous))
        previous = batch_type
    return assets


risk_modeling_assets = build_batch_assets()

risk_modeling_cycle_job = dg.define_asset_job(
    "risk_modeling_cycle",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=CYCLES,
    # Run retries would only repeat validation failures or wait-for-decision stops; transient
    # service errors are already retried inside the engine.
    tags={**CONCURRENCY_TAG, **NO_RUN_RETRY_ON_STEP_FAILURE},
    description="All twelve batch types of one cycle, in dependency order.",
)
