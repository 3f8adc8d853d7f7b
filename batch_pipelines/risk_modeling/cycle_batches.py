"""One batch type of one cycle, from stored configuration to a reconciled batch.

This is what materializing a risk-modeling asset does, kept free of Dagster so it can be
driven by the assets, the CLI and tests alike:

1. the cycle must be the active one;
2. the batch is created from the cycle's stored master configuration the first time;
3. FAILED jobs of an earlier run are resubmitted as new jobs (history kept), and so are
   FINISHED jobs whose entity is gone from the service;
4. jobs never submitted are validated against the Risk Modeler's current state first — a
   validation error submits nothing; existing analyses and groups wait for the user's
   decision;
5. the engine submits, tracks and reconciles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from batch_pipelines.core.errors import BatchError, NotFound
from batch_pipelines.core.names import check_name
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.engine.executor import BatchRunResult, EngineOptions, ProgressReport, run_batch
from batch_pipelines.instance import EMBEDDED_RISK_MODELER_DB
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.job_configurations import build_batch_job_configurations
from batch_pipelines.risk_modeling.models import MasterConfiguration
from batch_pipelines.store.batch_store import BatchStore, ConfigurationRecord

FAMILY = "risk_modeling"


class BatchValidationFailed(BatchError):
    code = "BP-BATCH-VALIDATION"


# What to do when the service already holds what the batch would create: most often a
# workbook loaded again after the batch store was reset while the Risk Modeler (or its
# simulator, whose state is a file of its own) kept everything created before.
ALREADY_EXISTS_HINT = (
    "the Risk Modeler already holds entities this batch would create, e.g. from an earlier "
    "load of this workbook: delete them there or load it with another Cycle Type; with the "
    "embedded simulator, reset its state too when you reset the batch store "
    f"(`.venv/bin/batch-pipelines simulate reset-risk-modeler`, or remove {EMBEDDED_RISK_MODELER_DB})"
)


def validation_failure_message(batch_type: BatchType, cycle: str, errors: list[str]) -> str:
    """The one-line summary of a failed validation, with what to do when it says what to do."""
    message = (
        f"{batch_type} for cycle {cycle}: {len(errors)} validation errors; nothing was submitted"
    )
    if any(error.endswith("already exists") or " already exists in " in error for error in errors):
        message += f"; {ALREADY_EXISTS_HINT}"
    return message


class AnalysesAwaitDecision(BatchError):
    """Some analyses (or analysis groups) already exist: the user decides per entity (skip /
    delete and resubmit) with the ``analysis_decisions`` job."""

    code = "BP-ANALYSES-EXIST"


@dataclass(frozen=True)
class BatchTypeOutcome:
    batch_id: int
    batch_type: BatchType
    run: BatchRunResult
    resubmitted_job_ids: list[int] = field(default_factory=list)
    validated_jobs: int = 0


def cycle_name_of(configuration: MasterConfiguration) -> str:
    """A cycle is named by the workbook's date and type, as its EDM names are (202503_Quarterly).

    The name is a partition key and the folder of the cycle's files, so it must be a safe
    name (the workbook's validation already checks the Cycle Type; this guards any other
    way a configuration arrives)."""
    meta = configuration.metadata
    return check_name(f"{meta.current_date_value}_{meta.cycle_type}".replace(" ", "_"), "cycle")


def configuration_checksum(configuration: MasterConfiguration) -> str:
    return hashlib.sha256(
        json.dumps(configuration.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()


def store_cycle_configuration(
    store: BatchStore, configuration: MasterConfiguration, *, source: str
) -> tuple[str, ConfigurationRecord]:
    """Register the workbook's cycle if new (archiving the active one) and store its configuration."""
    cycle = cycle_name_of(configuration)
    try:
        store.get_cycle(cycle)
    except NotFound:
        store.register_cycle(cycle)
    record = store.save_configuration(
        cycle_name=cycle,
        family=FAMILY,
        name=source.rsplit("/", 1)[-1],
        source=source,
        checksum=configuration_checksum(configuration),
        content=configuration.model_dump(mode="json"),
    )
    return cycle, record


def load_cycle_configuration(
    store: BatchStore, cycle: str
) -> tuple[ConfigurationRecord, MasterConfiguration]:
    record = store.configuration_for_cycle(cycle, FAMILY)
    if record is None:
        raise BatchError(
            f"cycle {cycle!r} has no master configuration loaded", code="BP-NO-CONFIGURATION"
        )
    return record, MasterConfiguration.model_validate(record.content)


def ensure_batch(store: BatchStore, cycle: str, batch_type: BatchType) -> int:
    """The cycle's batch of this type, created from the stored configuration the first time."""
    existing = store.find_batches(family=FAMILY, batch_type=batch_type.value, partition_key=cycle)
    if existing:
        return existing[0].id
    record, configuration = load_cycle_configuration(store, cycle)
    jobs = build_batch_job_configurations(configuration, batch_type)
    return store.find_or_create_batch(
        family=FAMILY,
        batch_type=batch_type.value,
        partition_key=cycle,
        name=f"{cycle} {batch_type.value}",
        cycle_id=store.get_cycle(cycle).id,
        configuration_id=record.id,
        job_configurations=[{"key": j["key"], "data": j} for j in jobs],
    )


async def materialize_batch_type(
    store: BatchStore,
    ctx: HandlerContext,
    batch_type: BatchType,
    *,
    options: EngineOptions,
    on_progress: Callable[[ProgressReport], None] | None = None,
    on_resubmitted: Callable[[list[int]], None] | None = None,
) -> BatchTypeOutcome:
    from batch_pipelines.risk_modeling.entity_validation import (
        finished_jobs_missing_their_entity,
        validate_batch,
    )
    from batch_pipelines.risk_modeling.handlers import handler_for

    cycle = ctx.cycle
    store.require_active_cycle(cycle)
    batch_id = ensure_batch(store, cycle, batch_type)
    if store.get_batch(batch_id).status == BatchStatus.CANCELLED:
        raise BatchError(
            f"batch {batch_id} ({batch_type}) was cancelled; resubmit jobs to reopen it"
        )

    failed = [j.id for j in store.list_jobs(batch_id, skipped=False, statuses=[JobStatus.FAILED])]
    resubmitted = store.resubmit_jobs(failed) if failed else []
    # A FINISHED job is redone only when the entity it created is gone from the service.
    finished = store.list_jobs(batch_id, skipped=False, statuses=[JobStatus.FINISHED])
    if finished:
        missing = set(
            await finished_jobs_missing_their_entity(
                batch_type, [j.configuration for j in finished], ctx
            )
        )
        gone = [j.id for j in finished if j.key in missing]
        if gone:
            store.add_batch_event(
                batch_id,
                "finished jobs whose entity is missing are resubmitted",
                data={"job_ids": gone},
            )
            resubmitted += store.resubmit_jobs(gone, allow_finished=True)
    if resubmitted and on_resubmitted:
        on_resubmitted(resubmitted)

    fresh = [
        j
        for j in store.list_jobs(batch_id, skipped=False, statuses=[JobStatus.INITIATED])
        if j.submit_requested_at is None
    ]
    if fresh:
        validation = await validate_batch(batch_type, [j.configuration for j in fresh], ctx)
        if validation.errors:
            store.add_batch_event(
                batch_id,
                "validation failed; nothing submitted",
                level="ERROR",
                data={"errors": validation.errors},
            )
            raise BatchValidationFailed(
                validation_failure_message(batch_type, cycle, validation.errors),
                details={"errors": validation.errors, "batch_id": batch_id},
            )
        if validation.existing:
            what = "analyses" if batch_type == BatchType.ANALYSIS else "analysis groups"
            raise AnalysesAwaitDecision(
                f"{len(validation.existing)} {what} already exist in the Risk Modeler; decide per "
                f"entity (skip or delete and resubmit) with the analysis_decisions job "
                f"(batch_type: {batch_type.value})",
                details={"existing": validation.existing, "batch_id": batch_id},
            )
    run = await run_batch(
        store, batch_id, handler_for(batch_type, ctx), options, on_progress=on_progress
    )
    return BatchTypeOutcome(
        batch_id=batch_id,
        batch_type=batch_type,
        run=run,
        resubmitted_job_ids=resubmitted,
        validated_jobs=len(fresh),
    )
