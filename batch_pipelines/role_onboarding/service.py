"""Submit, status and retry: the three calls of seed 000, shared by the UI jobs, the CLI,
the sensor and the demo.

Submitting is validation plus one store write; it launches nothing itself. The
``role_batch_submissions`` sensor turns stored workflows into run requests (one per role,
the workflow id as run key, so nothing runs twice) and Dagster's run queue throttles
them with the tag concurrency limit of dagster.yaml. Status reads the batch record and,
per retry round, one cheap query of the instance's run storage: the latest run of each
role's partition among the runs tagged with that round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from batch_pipelines.core.errors import BatchError, ConfigurationError
from batch_pipelines.failures import NO_RUN_RETRY_ON_STEP_FAILURE
from batch_pipelines.role_onboarding.status import (
    ACTIVITY_POOL,
    BATCH_TAG,
    CONCURRENCY_GROUP,
    CONCURRENCY_TAG_KEY,
    DEFAULT_MAX_CONCURRENT_ACTIVITIES,
    ROUND_TAG,
    WORKFLOW_TAG,
    BatchStatusView,
    RoleBatchRecord,
    RunView,
    WorkflowRecord,
    activity_limit_change,
    check_workflow_limit,
    compute_batch_status,
    dashboard_url,
    estimated_duration_seconds,
    role_run_limit,
    round_tag_value,
    select_retry,
)
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import (
    SUBMISSION_FLAG_ENV,
    ValidatedSubmission,
    check_batch_id,
    new_batch_id,
)

DEFAULT_ROLE_RUN_LIMIT = 5
ASSET_NAME = "role_onboarding"
# Run-level retries would repeat a failure the asset's own retry policy already judged
# (transient errors are retried inside the run); a crashed run is still retried.


@dataclass(frozen=True)
class SubmissionResult:
    batch: RoleBatchRecord
    response: dict[str, Any]


def role_run_limit_of(instance: dg.DagsterInstance) -> int:
    """The run queue's limit on role runs (dagster.yaml), or the seed's 5 when the instance
    has no run queue (then nothing limits them, and 5 only feeds estimates)."""
    config = instance.get_concurrency_config().run_queue_config
    if config is None:
        return DEFAULT_ROLE_RUN_LIMIT
    limit = role_run_limit(config.tag_concurrency_limits, config.max_concurrent_runs)
    return limit if limit is not None and limit > 0 else DEFAULT_ROLE_RUN_LIMIT


def activity_limit_of(instance: dg.DagsterInstance) -> int:
    """The activity pool's limit in the instance, or the seed's 5 before the sensor set it."""
    storage = instance.event_log_storage
    if ACTIVITY_POOL in storage.get_concurrency_keys():
        return storage.get_concurrency_info(ACTIVITY_POOL).slot_count or 0
    return DEFAULT_MAX_CONCURRENT_ACTIVITIES


def role_concurrency_of(instance: dg.DagsterInstance) -> int:
    """How many roles work at once, for estimates: the smaller of the two limits (role runs
    by the run queue, role steps by the activity pool), at least 1."""
    return max(1, min(role_run_limit_of(instance), activity_limit_of(instance)))


def apply_activity_limit(instance: dg.DagsterInstance, wanted: int) -> int | None:
    """Give the activity pool ``wanted`` slots in the instance (pool limits live in Dagster's
    storage, not in dagster.yaml); the new limit, or None when it already had it."""
    storage = instance.event_log_storage
    current = (
        storage.get_concurrency_info(ACTIVITY_POOL).slot_count
        if ACTIVITY_POOL in storage.get_concurrency_keys()
        else None
    )
    change = activity_limit_change(current, wanted)
    if change is not None:
        storage.set_concurrency_slots(ACTIVITY_POOL, change)
    return change


def check_workflow_limit_of(instance: dg.DagsterInstance, wanted: int | None) -> None:
    """``check_workflow_limit`` against the instance's run queue (None: no run queue)."""
    config = instance.get_concurrency_config().run_queue_config
    limit = (
        role_run_limit(config.tag_concurrency_limits, config.max_concurrent_runs)
        if config is not None
        else None
    )
    check_workflow_limit(wanted, limit)


def submit_batch(
    store: RoleOnboardingStore,
    submission: ValidatedSubmission,
    *,
    enabled: bool,
    ttl: timedelta,
    role_seconds: float,
    concurrency: int,
    now: datetime | None = None,
) -> SubmissionResult:
    """Store the batch (valid roles only) and answer as the seed's push-batch does:
    ``total_roles`` counts every role of the request, the invalid ones skipped with their
    reason included (``queued_roles`` + ``skipped_roles``); ``workflow_ids`` lists the
    queued ones."""
    if not enabled:
        raise BatchError(
            f"role batch submission is disabled by its feature flag ({SUBMISSION_FLAG_ENV})",
            code="BP-ROLE-SUBMISSION-DISABLED",
        )
    if not submission.valid:
        listing = "; ".join(str(r) for r in submission.invalid)
        raise ConfigurationError(f"no valid role in the submission, nothing stored: {listing}")
    batch = store.create_batch(new_batch_id(), submission, ttl=ttl, now=now)
    workflows = batch.current_workflows()
    skipped = len(submission.invalid)
    message = f"Batch submitted: {len(workflows)} roles queued for processing"
    if skipped:
        message += f"; {skipped} invalid role{'s' if skipped != 1 else ''} skipped"
    response = {
        "batch_id": batch.batch_id,
        # The seed's total_roles is the request's roles: queued ones plus skipped invalid ones.
        "total_roles": len(workflows) + skipped,
        "queued_roles": len(workflows),
        "skipped_roles": skipped,
        "workflow_ids": [wf.workflow_id for wf in workflows],
        "status": "queued",
        "estimated_duration_seconds": estimated_duration_seconds(
            len(workflows), role_seconds=role_seconds, concurrency=concurrency
        ),
        "message": message,
        "invalid_roles": [r.to_dict() for r in submission.invalid],
    }
    return SubmissionResult(batch=batch, response=response)


def latest_role_runs(
    instance: dg.DagsterInstance, batch: RoleBatchRecord
) -> dict[tuple[int, str], RunView]:
    """(round, partition key) -> the latest run of that role in that round.

    One query per round still current for some role, reading only run id, status, start
    and end time from the runs table (``get_run_partition_data``): no run bodies are
    deserialized, which keeps a 10,000-role batch well under a second.
    """
    rounds = sorted({wf.round for wf in batch.current_workflows()})
    runs: dict[tuple[int, str], RunView] = {}
    for number in rounds:
        data = instance.run_storage.get_run_partition_data(
            dg.RunsFilter(tags={ROUND_TAG: round_tag_value(batch.batch_id, number)})
        )
        for d in data:
            runs[(number, d.partition)] = RunView(
                run_id=d.run_id, status=d.status.value, start_time=d.start_time, end_time=d.end_time
            )
    return runs


def batch_status(
    instance: dg.DagsterInstance,
    store: RoleOnboardingStore,
    batch_id: str,
    *,
    dashboard_base_url: str = "",
    now: datetime | None = None,
) -> BatchStatusView:
    batch = store.get_batch(check_batch_id(batch_id), now=now, with_options=False)
    runs = latest_role_runs(instance, batch)
    ready = [pk for (_, pk), run in runs.items() if run.status == "SUCCESS"]
    dashboards = {
        pk: dashboard_url(ident, dashboard_base_url)
        for pk, ident in store.dashboard_ids(batch.company_id, ready).items()
    }
    cost, tokens = store.ledger_totals(batch.batch_id)
    return compute_batch_status(
        batch,
        runs,
        dashboards,
        concurrency=role_concurrency_of(instance),
        cost=cost,
        tokens=tokens,
    )


def retry_failed(
    instance: dg.DagsterInstance,
    store: RoleOnboardingStore,
    batch_id: str,
    *,
    workflow_ids: list[str] | None = None,
    force_rerun: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """New workflows (a new round of the same batch) for the failed roles, or for the given
    failed workflow ids; other roles are untouched. Answers as the seed's retry-failed."""
    status = batch_status(instance, store, batch_id, now=now)
    selection = select_retry(status, workflow_ids)
    new = store.add_retry_round(
        status.batch_id,
        [r.workflow_id for r in selection.retry],
        {"force_rerun": force_rerun},
        now=now,
    )
    count = len(new)
    return {
        "batch_id": status.batch_id,
        "retried_count": count,
        "new_workflow_ids": [wf.workflow_id for wf in new],
        "retried_workflow_ids": [r.workflow_id for r in selection.retry],
        "untouched": [{"workflow_id": w, "reason": why} for w, why in selection.untouched],
        "message": f"Retried {count} failed role{'s' if count != 1 else ''}"
        if count
        else "No failed role to retry",
    }


def run_tags(wf: WorkflowRecord) -> dict[str, str]:
    return {
        CONCURRENCY_TAG_KEY: CONCURRENCY_GROUP,
        BATCH_TAG: wf.batch_id,
        ROUND_TAG: round_tag_value(wf.batch_id, wf.round),
        WORKFLOW_TAG: wf.workflow_id,
        **NO_RUN_RETRY_ON_STEP_FAILURE,
    }


def run_config(wf: WorkflowRecord) -> dict[str, Any]:
    return {
        "ops": {
            ASSET_NAME: {
                "config": {
                    "role_name": wf.role_name,
                    "draup_role_name": wf.draup_role_name or "",
                    "skip_enhancement_workflows": bool(
                        wf.options.get("skip_enhancement_workflows", False)
                    ),
                    "force_rerun": bool(wf.options.get("force_rerun", False)),
                    "workflow_id": wf.workflow_id,
                    "attempt": wf.round,
                }
            }
        }
    }


def run_request(wf: WorkflowRecord) -> dg.RunRequest:
    """One role's run: its partition, its workflow id as run key (a repeated request is
    dropped by the daemon), the tags the run queue and the status read."""
    return dg.RunRequest(
        run_key=wf.workflow_id,
        partition_key=wf.partition_key,
        run_config=run_config(wf),
        tags=run_tags(wf),
    )
