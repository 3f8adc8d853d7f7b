"""Pause, resume, cancel and resubmit: family-neutral batch actions as launchable jobs.

They only change the store: a running engine notices pause/cancel at its next control
check, and the batch's asset is re-materialized to pick up resumed or resubmitted work.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from batch_pipelines.core.json_values import parse_json_object
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.failures import (
    NO_RUN_RETRY_ON_STEP_FAILURE,
    TRANSIENT_FAULT_RETRIES,
    user_errors_are_final,
)
from batch_pipelines.resources import BatchStoreResource

_ACTION_TARGET = {
    "pause": BatchStatus.PAUSED,
    "resume": BatchStatus.ACTIVE,
    "cancel": BatchStatus.CANCELLED,
}


class BatchActionConfig(dg.Config):
    batch_id: int = Field(
        description="The batch to act on (see `.venv/bin/batch-pipelines batch list`)."
    )
    action: Literal["pause", "resume", "cancel"] = Field(description="pause | resume | cancel")


class ResubmitJobsConfig(dg.Config):
    job_ids: list[int] = Field(
        description="FAILED, ERROR or CANCELLED jobs to resubmit as new jobs."
    )
    configuration_json: str | None = Field(
        default=None, description="Optional replacement job configuration (a JSON object)."
    )
    override_reason: str | None = Field(
        default=None, description="Required with a replacement configuration."
    )


@dg.op(retry_policy=TRANSIENT_FAULT_RETRIES)
def change_batch_status(
    context: dg.OpExecutionContext, config: BatchActionConfig, batch_store: BatchStoreResource
) -> None:
    """Move the batch to the action's status. A refused action (an unknown batch, an
    illegal transition) fails the run for good: a retry would be refused the same way. A
    store that cannot be reached is not caught here: the op retries it."""
    store = batch_store.get_store()
    with user_errors_are_final():
        batch = store.set_batch_status(config.batch_id, _ACTION_TARGET[config.action])
    context.log.info(f"batch {batch.id} ({batch.batch_type}) is now {batch.status}")


@dg.op(retry_policy=TRANSIENT_FAULT_RETRIES)
def resubmit_batch_jobs(
    context: dg.OpExecutionContext, config: ResubmitJobsConfig, batch_store: BatchStoreResource
) -> list[int]:
    # An unknown or non-resubmittable job, or bad JSON, is final: a retry fails the same way.
    with user_errors_are_final():
        new_ids = _resubmit(config, batch_store)
    context.log.info(f"resubmitted jobs {config.job_ids} as {new_ids}; the batch is ACTIVE again")
    return new_ids


def _resubmit(config: ResubmitJobsConfig, batch_store: BatchStoreResource) -> list[int]:
    data = parse_json_object(config.configuration_json, "configuration_json")
    return batch_store.get_store().resubmit_jobs(
        config.job_ids, configuration_data=data, override_reason=config.override_reason
    )


@dg.job(
    description="Pause, resume or cancel a batch of any family.",
    tags=NO_RUN_RETRY_ON_STEP_FAILURE,
)
def batch_control():
    change_batch_status()


@dg.job(
    description="Resubmit failed jobs as new jobs (history kept; the originals are skipped).",
    tags=NO_RUN_RETRY_ON_STEP_FAILURE,
)
def resubmit_jobs():
    resubmit_batch_jobs()
