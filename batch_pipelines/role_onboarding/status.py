"""A batch's status, computed on demand from its record and its roles' latest runs.

Nothing here is stored: as in seed 000 ("pull, not push"), the batch record only lists its
roles and the runs say how far each got, so the view can never disagree with them. The
counts and the batch state come from the foundation's :func:`aggregate`, the same rules
every family shows, read by the seed's own state table: a batch in which every role
failed is ``completed``, not ``partial`` (see :func:`role_batch_state`). Also here: which
roles a "retry failed" request retries, the estimate a submission answers with, the
role-run limit read from the run queue's configuration and the two limits' checks.
Pure: no Dagster, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from batch_pipelines.core.aggregate import (
    AggregatedView,
    ItemState,
    ViewState,
    aggregate,
    estimate_eta_seconds,
)
from batch_pipelines.core.errors import ConfigurationError

# Run tags: the concurrency group dagster.yaml limits, the batch (for people and the UI's run
# filter), the retry round whose runs one query finds, and the workflow id people see.
CONCURRENCY_TAG_KEY = "batch_pipelines/concurrency_group"
CONCURRENCY_GROUP = "role_onboarding"
BATCH_TAG = "batch_pipelines/role_batch"
ROUND_TAG = "batch_pipelines/role_batch_round"
WORKFLOW_TAG = "batch_pipelines/role_workflow"
# Seed 000 has two limits per worker: 10 workflows (role runs, the run queue's tag limit
# above, in dagster.yaml) and 5 activities (AI assessments: the role's step, which claims a
# slot of this Dagster pool; ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES sets its limit).
ACTIVITY_POOL = "role_onboarding_activities"
DEFAULT_MAX_CONCURRENT_ACTIVITIES = 5

# What each Dagster run status means for a role.
RUN_STATUS_STATES: dict[str, ItemState] = {
    "NOT_STARTED": ItemState.QUEUED,
    "MANAGED": ItemState.QUEUED,
    "QUEUED": ItemState.QUEUED,
    "STARTING": ItemState.IN_PROGRESS,
    "STARTED": ItemState.IN_PROGRESS,
    "CANCELING": ItemState.IN_PROGRESS,
    "SUCCESS": ItemState.COMPLETED,
    "FAILURE": ItemState.FAILED,
    "CANCELED": ItemState.FAILED,
}
# The role statuses people read (the seed says "ready" for a finished role).
ROLE_STATUS = {
    ItemState.QUEUED: "queued",
    ItemState.IN_PROGRESS: "running",
    ItemState.COMPLETED: "ready",
    ItemState.FAILED: "failed",
}


def round_tag_value(batch_id: str, round_number: int) -> str:
    return f"{batch_id}#{round_number}"


@dataclass(frozen=True)
class RunView:
    """The little of a Dagster run record that the status needs."""

    run_id: str
    status: str
    start_time: float | None = None
    end_time: float | None = None

    @property
    def state(self) -> ItemState:
        try:
            return RUN_STATUS_STATES[self.status]
        except KeyError:
            raise ValueError(f"unknown Dagster run status {self.status!r}") from None


@dataclass(slots=True)  # not frozen: cheaper to build, and a batch read builds 10,000
class WorkflowRecord:
    """One attempt at one role of a batch (round 1 is the submission, later rounds retries)."""

    workflow_id: str
    batch_id: str
    role_index: int
    round: int
    partition_key: str
    role_name: str
    draup_role_name: str | None
    options: dict[str, Any]
    retry_of: str | None = None
    last_step: str | None = None
    error: str | None = None
    id: int = 0
    run_id: str | None = None  # the run executing this attempt, once it started


@dataclass(frozen=True)
class RoleBatchRecord:
    batch_id: str
    company_id: str
    created_by: str | None
    options: dict[str, Any]
    invalid_roles: list[dict[str, Any]]
    rounds: int
    created_at: datetime
    expires_at: datetime
    workflows: list[WorkflowRecord] = field(default_factory=list)

    def current_workflows(self) -> list[WorkflowRecord]:
        """Per role, its latest attempt, in submission order."""
        latest: dict[str, WorkflowRecord] = {}
        for wf in self.workflows:
            known = latest.get(wf.partition_key)
            if known is None or wf.round > known.round:
                latest[wf.partition_key] = wf
        return sorted(latest.values(), key=lambda wf: wf.role_index)


@dataclass(slots=True)  # not frozen: 10,000 of these are built per status of a big batch
class RoleStatus:
    role_name: str
    company_id: str
    partition_key: str
    workflow_id: str
    status: str
    attempt: int
    run_id: str | None = None
    dashboard_url: str | None = None
    error: str | None = None
    last_step: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role_name": self.role_name,
            "company_id": self.company_id,
            "partition_key": self.partition_key,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "attempt": self.attempt,
            "run_id": self.run_id,
        }
        if self.dashboard_url:
            out["dashboard_url"] = self.dashboard_url
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class BatchStatusView:
    batch_id: str
    company_id: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime
    view: AggregatedView
    roles: list[RoleStatus]
    invalid_roles: list[dict[str, Any]]
    cost: Decimal = Decimal(0)  # the batch's cost ledger total, every round included
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        v = self.view
        return {
            "batch_id": self.batch_id,
            "company_id": self.company_id,
            "total": v.total,
            "queued": v.queued,
            "in_progress": v.in_progress,
            "completed": v.completed,
            "failed": v.failed,
            "state": str(v.state),
            "progress_percent": v.progress_percent,
            "success_rate": v.success_rate,
            "eta_seconds": v.eta_seconds,
            "cost": money(self.cost),
            "tokens": self.tokens,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "roles": [r.to_dict() for r in self.roles],
            "invalid_roles": self.invalid_roles,
        }


def money(value: Decimal) -> str:
    """A ledger amount as shown to people and in JSON: exact, six decimals."""
    return str(value.quantize(Decimal("0.000001")))


def role_batch_state(view: AggregatedView) -> ViewState:
    """The seed's batch state: ``completed`` is "all roles done (success or fail)" and
    ``partial`` "completed with some failures". Partial means part of the batch succeeded,
    so a settled batch in which every role failed is ``completed`` (its ``failed`` equals
    its ``total`` and its success rate is 0.0), not ``partial``; other states are the
    foundation's."""
    if view.state == ViewState.PARTIAL and view.completed == 0:
        return ViewState.COMPLETED
    return view.state


def dashboard_url(dashboard_id: str, base_url: str = "") -> str:
    return f"{base_url.rstrip('/')}/dashboard/roles/{dashboard_id}"


def compute_batch_status(
    batch: RoleBatchRecord,
    runs: Mapping[tuple[int, str], RunView],
    dashboards: Mapping[str, str],
    *,
    concurrency: int = 1,
    cost: Decimal = Decimal(0),
    tokens: int = 0,
) -> BatchStatusView:
    """The seed's batch status.

    ``runs`` maps (round, partition key) to the latest run of that role in that round;
    ``dashboards`` maps a partition key to its dashboard URL. A role whose current
    attempt has no run yet is queued (the submissions sensor has not launched it), unless
    its workflow recorded a run that started: that run is gone from the run storage
    (deleted), so the role failed and can be retried instead of waiting for good. A role's
    ``run_id`` is its latest run's, else the one its workflow recorded when its run started.
    ``cost`` and ``tokens`` are the batch's cost ledger totals.
    """
    roles: list[RoleStatus] = []
    states: list[ItemState] = []
    durations: list[float] = []
    for wf in batch.current_workflows():
        run = runs.get((wf.round, wf.partition_key))
        gone = run is None and wf.run_id is not None
        state = run.state if run is not None else ItemState.FAILED if gone else ItemState.QUEUED
        if (
            run is not None
            and run.start_time is not None
            and run.end_time is not None
            and state
            in (
                ItemState.COMPLETED,
                ItemState.FAILED,
            )
        ):
            durations.append(max(0.0, run.end_time - run.start_time))
        error = None
        if state == ItemState.FAILED:
            if run is None:
                error = wf.error or f"run {wf.run_id} is gone from the run storage"
            else:
                error = wf.error or f"run {run.run_id} ended {run.status} before reporting a step"
        states.append(state)
        roles.append(
            RoleStatus(
                role_name=wf.role_name,
                company_id=batch.company_id,
                partition_key=wf.partition_key,
                workflow_id=wf.workflow_id,
                status=ROLE_STATUS[state],
                attempt=wf.round,
                run_id=run.run_id if run is not None else wf.run_id,
                dashboard_url=dashboards.get(wf.partition_key)
                if state == ItemState.COMPLETED
                else None,
                error=error,
                last_step=wf.last_step,
            )
        )
    view = aggregate(states, durations_seconds=durations, concurrency=max(1, concurrency))
    view = replace(view, state=role_batch_state(view))
    return BatchStatusView(
        batch_id=batch.batch_id,
        company_id=batch.company_id,
        created_at=batch.created_at,
        created_by=batch.created_by,
        expires_at=batch.expires_at,
        view=view,
        roles=roles,
        invalid_roles=batch.invalid_roles,
        cost=cost,
        tokens=tokens,
    )


@dataclass(frozen=True)
class RetrySelection:
    retry: list[RoleStatus]
    untouched: list[tuple[str, str]]  # (workflow id, why it is not retried)


def select_retry(
    status: BatchStatusView, workflow_ids: Sequence[str] | None = None
) -> RetrySelection:
    """Which roles a "retry failed" request retries.

    Without workflow ids: every failed role. With ids: those of them whose role failed;
    an id that is a role's current workflow but not failed is left untouched (with the
    reason), an id that is not a current workflow of this batch is an error (nothing is
    retried), so a typo never goes unnoticed.
    """
    if not workflow_ids:
        return RetrySelection([r for r in status.roles if r.status == "failed"], [])
    by_id = {r.workflow_id: r for r in status.roles}
    unknown = [w for w in workflow_ids if w not in by_id]
    if unknown:
        raise ConfigurationError(
            f"workflow ids {unknown} are not current workflows of {status.batch_id} "
            "(a retried workflow is replaced by its retry's id)"
        )
    retry: list[RoleStatus] = []
    untouched: list[tuple[str, str]] = []
    for wid in dict.fromkeys(workflow_ids):
        role = by_id[wid]
        if role.status == "failed":
            retry.append(role)
        else:
            untouched.append(
                (wid, f"{role.role_name} is {role.status}, only failed roles are retried")
            )
    return RetrySelection(retry, untouched)


def estimated_duration_seconds(roles: int, *, role_seconds: float, concurrency: int) -> float:
    """How long ``roles`` queued roles take at ``concurrency`` runs at once (the seed's
    throughput table: 50 roles, 5 at once, 15 min each -> 2.5 h)."""
    if roles <= 0:
        return 0.0
    eta = estimate_eta_seconds([role_seconds], remaining=roles, concurrency=max(1, concurrency))
    return float(eta or 0.0)


def role_run_limit(
    tag_concurrency_limits: Iterable[Mapping[str, Any]], max_concurrent_runs: int | None
) -> int | None:
    """How many role runs the run queue lets execute at once, from the instance's
    ``tag_concurrency_limits`` and ``max_concurrent_runs`` (None or negative: unlimited).
    None when nothing limits them."""
    limits: list[int] = []
    for entry in tag_concurrency_limits:
        if entry.get("key") != CONCURRENCY_TAG_KEY:
            continue
        value = entry.get("value")
        # No value, or a per-unique-value limit, applies to our value too.
        if value is None or isinstance(value, Mapping) or value == CONCURRENCY_GROUP:
            limits.append(int(entry["limit"]))
    if max_concurrent_runs is not None and max_concurrent_runs >= 0:
        limits.append(max_concurrent_runs)
    return min(limits) if limits else None


def activity_limit_change(current: int | None, wanted: int) -> int | None:
    """The limit to give the activity pool, or None when it already has ``wanted`` slots.
    ``wanted`` below 1 would stop every role: refused with the variable to fix."""
    if wanted < 1:
        raise ConfigurationError(
            f"ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES must be at least 1, got {wanted}"
        )
    return None if current == wanted else wanted


def check_workflow_limit(wanted: int | None, instance_limit: int | None) -> None:
    """ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS, when set, must be the run queue's limit on
    role runs: Dagster reads run limits from dagster.yaml only (no environment variable
    there), so a different value would be silently ignored. Refused, naming both."""
    if wanted is None:
        return
    if wanted < 1:
        raise ConfigurationError(
            f"ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS must be at least 1, got {wanted}"
        )
    if wanted != instance_limit:
        shown = "no limit" if instance_limit is None else f"a limit of {instance_limit}"
        raise ConfigurationError(
            f"ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS is {wanted} but the instance's run queue "
            f"gives role runs {shown}: set the `limit` of the {CONCURRENCY_TAG_KEY}: "
            f"{CONCURRENCY_GROUP} tag concurrency limit in dagster.yaml to {wanted}"
        )


def peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at one instant; an interval that
    ends exactly when another starts does not overlap it."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ends ({end}) before it starts ({start})")
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends (-1) before starts at the same instant
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak
