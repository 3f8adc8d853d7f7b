"""One configured batch run, end to end: validate, plan, execute, record.

Both assets (static jobs by schedule tick, preference groups by group and tick) run a batch
the same way:

1. gather the data: users (the job's ids, or found by its filters) or category items, and
   validate every user id, including users referenced by category items and distribution
   recipients, against ``system_users`` in one set-based pass; invalid users are dropped
   before anything is sent, and recorded;
2. plan the requests with the job's strategy (``strategies.plan_requests``);
3. execute them, skipping requests that already succeeded in an earlier attempt of the same
   batch (a retried run resumes; the service replays by idempotency key anyway);
4. write the batch context in the seed's shape, request contexts, results per user, tenant
   and feature type, batch references for recipients, and the cost ledger, in one
   transaction each, and settle the batch's status in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from batch_pipelines.configured_batches.contexts import (
    BATCH,
    BATCH_REFERENCE,
    FEATURE_TYPE_RESULT,
    REQUEST,
    TENANT_RESULT,
    USER_RESULT,
    ContextStore,
    ContextWrite,
    batch_context,
    merge_batch_contexts,
)
from batch_pipelines.configured_batches.delivery import (
    BatchOutcome,
    DeliveryReport,
    deliver,
    delivered_keys,
    plan_deliveries,
)
from batch_pipelines.configured_batches.job_config import JobConfig
from batch_pipelines.configured_batches.strategies import (
    BatchInputs,
    ChatClient,
    Request,
    RequestOutcome,
    execute_requests,
    plan_requests,
    strategy_for,
)
from batch_pipelines.core.costs import CostEntry, reported_or_estimated_usage
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines.core.statuses import BatchStatus, can_transition_batch
from batch_pipelines.store.batch_store import BatchStore

FAMILY = "configured_batches"
RESULT_EXCERPT_CHARS = 500


class UserValidationLike(Protocol):
    valid: list[str]
    invalid: list[str]
    stats: dict[str, int]


class UsersSource(Protocol):
    def validate(
        self, user_ids: Sequence[str], tenant_id: str | None = None
    ) -> UserValidationLike: ...

    def get_users(self, user_ids: Sequence[str]) -> dict[str, dict]: ...

    def find_users(self, filters: Mapping[str, Any], limit: int | None) -> list[dict]: ...


class CategoriesSource(Protocol):
    def items(
        self, category: str, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True)
class GroupMembers:
    """The users of one preference group and their preferences (preference batches)."""

    partition_key: str
    preferences: Mapping[str, Any]  # user id -> Preference


@dataclass(frozen=True)
class Gathered:
    inputs: BatchInputs
    valid: list[str]
    invalid: list[str]
    validation: dict[str, int]
    user_references: dict[str, int] | None = None
    invalid_user_ids: list[str] = field(default_factory=list)
    # The validation of the batch's own users (the group's, for preference batches).
    users: dict[str, int] = field(default_factory=dict)


def batch_key_for(job: JobConfig, tick: str, group: str | None = None) -> str:
    """The batch's identity: one batch per job (and preference group) and tick."""
    return f"{job.job_id}/{group}/{tick}" if group else f"{job.job_id}/{tick}"


def _user_id(record: Mapping[str, Any]) -> str:
    return str(record.get("id") or record.get("user_id"))


def _with_id(uid: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {**record, "id": uid}


def gather(
    job: JobConfig,
    users: UsersSource,
    categories: CategoriesSource,
    group: GroupMembers | None = None,
) -> Gathered:
    """Read and validate what the batch works on (step 1)."""
    if job.type.is_preference and group is None:
        raise ConfigurationError(
            f"job {job.job_id}: a {job.type} batch runs for a preference group"
        )
    candidate_ids: list[str] = []
    if job.type.data_source == "users" or job.type.is_preference:
        if group is not None:
            candidate_ids = sorted(group.preferences)
        elif job.user_ids:
            candidate_ids = list(dict.fromkeys(job.user_ids))
        else:
            candidate_ids = [_user_id(u) for u in users.find_users(job.filters, job.limit)]
    validation = users.validate(candidate_ids) if candidate_ids else None
    valid_ids = list(validation.valid) if validation else []
    invalid_ids = list(validation.invalid) if validation else []
    records = users.get_users(valid_ids) if valid_ids else {}
    user_records = [_with_id(uid, records[uid]) for uid in valid_ids if uid in records]
    preferences = dict(group.preferences) if group else {}

    stats = {"total": len(candidate_ids), "valid": len(valid_ids), "invalid": len(invalid_ids)}
    if job.type.data_source == "users":
        return Gathered(
            BatchInputs(users=user_records, preferences=preferences),
            valid_ids,
            invalid_ids,
            stats,
            None,
            invalid_ids,
            stats,
        )

    items_by_category: dict[str, list[Any]] = {}
    valid_categories: list[str] = []
    invalid_categories: list[str] = []
    for category in job.category_names:
        try:
            if hasattr(categories, "category"):
                categories.category(category)  # raises for a category that does not exist
            items = categories.items(category, job.filters or None, job.limit)
        except BatchPipelinesError:  # unknown, or unreadable with no snapshot: recorded as invalid
            invalid_categories.append(category)
            continue
        items_by_category[category] = list(items)
        valid_categories.append(category)
    referenced = sorted(
        {str(u) for items in items_by_category.values() for i in items for u in i.user_ids}
    )
    ref_validation = users.validate(referenced) if referenced else None
    ref_valid = set(ref_validation.valid) if ref_validation else set()
    ref_invalid = list(ref_validation.invalid) if ref_validation else []
    # Invalid references are dropped from the items before anything is sent.
    cleaned = {
        c: [_drop_references(i, ref_valid) for i in items] for c, items in items_by_category.items()
    }
    refs = {"total": len(referenced), "valid": len(ref_valid), "invalid": len(ref_invalid)}
    return Gathered(
        BatchInputs(users=user_records, items_by_category=cleaned, preferences=preferences),
        valid_categories,
        invalid_categories,
        refs,
        refs,
        sorted(set(invalid_ids) | set(ref_invalid)),
        stats,
    )


@dataclass(frozen=True)
class _Item:
    id: str
    category: str
    data: dict
    user_ids: list[str]


def _drop_references(item: Any, valid: set[str]) -> _Item:
    return _Item(
        str(item.id),
        str(item.category),
        dict(item.data),
        [u for u in item.user_ids if str(u) in valid],
    )


def nothing_to_do_reason(job: JobConfig, gathered: Gathered, group: GroupMembers | None) -> str:
    """Why a batch planned no requests, in words an operator can act on: no users or
    members, none of them valid, categories missing or without matching items.

    A batch with nothing to do is not a success to be counted among the others (an empty
    store, a filter that no longer matches, a group emptied by preference changes look
    exactly like "all done" otherwise), so the run says why it did nothing."""
    if job.type.data_source == "users" or job.type.is_preference:
        total = gathered.users.get("total", 0)
        if total == 0:
            if group is not None:
                return f"preference group {group.partition_key} has no members"
            if job.user_ids:
                return "the job lists no user ids"
            return f"no users match the job's filters {job.filters or {}} (is system_users empty?)"
        if gathered.users.get("valid", 0) == 0:
            return f"none of the {total} users is an active user of system_users"
    if job.type.data_source == "categories":
        if not gathered.valid:
            return f"none of the job's categories {job.category_names} exists or could be read"
        if not any(gathered.inputs.items_by_category.values()):
            return (
                f"the categories {gathered.valid} have no items matching the job's filters "
                f"{job.filters or {}}"
            )
    return "the job's strategy planned no requests for what was gathered"


@dataclass(frozen=True)
class BatchRunResult:
    batch_id: int
    batch_key: str
    status: BatchStatus
    context: dict[str, Any]
    requests_total: int
    sent_this_run: int
    reused: int
    failed_keys: list[str]
    recipients: list[str]
    invalid_recipients: list[str]
    costs_recorded: int
    # tenant -> {"users", "succeeded", "failed"}: the status by tenant, for run metadata.
    by_tenant: dict[str, dict[str, int]] = field(default_factory=dict)
    # feature type -> {"users", "succeeded", "failed", "tenants"} (preference batches).
    by_feature_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What this run stored per request and per user, for run metadata without reading it back.
    request_results: list[dict[str, Any]] = field(default_factory=list)
    user_results: list[ContextWrite] = field(default_factory=list)
    # Why the batch planned no requests; empty when it had work (see nothing_to_do_reason).
    nothing_to_do: str = ""
    # The results' delivery to recipients (see delivery.py); never a reason to fail.
    deliveries: DeliveryReport = field(default_factory=DeliveryReport)


def run_batch(
    store: BatchStore,
    job: JobConfig,
    *,
    tick: str,
    client_factory: Callable[[], Any],
    users: UsersSource,
    categories: CategoriesSource,
    group: GroupMembers | None = None,
    log: Callable[[str], None] = lambda message: None,
    delivery_client_factory: Callable[[], Any] | None = None,
) -> BatchRunResult:
    """Run one batch of ``job`` for ``tick`` (and ``group``) to a settled state.

    With ``delivery_client_factory`` (a Teams client), the results are then delivered to
    their recipients (``delivery.py``); a delivery failure is recorded, never raised."""
    contexts = ContextStore(store.engine)
    batch_key = batch_key_for(job, tick, group.partition_key if group else None)
    gathered = gather(job, users, categories, group)
    requests = plan_requests(job, gathered.inputs, tick=tick)
    recipients = list(dict.fromkeys(job.distribution.recipients))
    recipient_check = users.validate(recipients) if recipients else None
    valid_recipients = list(recipient_check.valid) if recipient_check else []
    invalid_recipients = list(recipient_check.invalid) if recipient_check else []

    batch_id = store.find_or_create_batch(
        family=FAMILY,
        batch_type=job.type.value,
        partition_key=batch_key,
        job_configurations=[],
        name=job.job_id,
        options={
            "job_id": job.job_id,
            "tick": tick,
            "group": group.partition_key if group else None,
        },
    )
    _move(store, batch_id, BatchStatus.ACTIVE)
    if gathered.invalid_user_ids or invalid_recipients:
        store.add_batch_event(
            batch_id,
            f"dropped {len(gathered.invalid_user_ids)} invalid users and {len(invalid_recipients)} invalid recipients before processing",
            level="WARNING",
            data={
                "invalid_users": gathered.invalid_user_ids[:1000],
                "invalid_recipients": invalid_recipients,
            },
        )
    log(
        f"{batch_key}: {len(requests)} requests ({strategy_for(job)}), {len(gathered.invalid_user_ids)} invalid users dropped"
    )
    # What earlier generations of this batch (runs of the same job, tick and group) did.
    earlier = {
        r.key[len(batch_key) + 1 :]: r.data
        for r in contexts.find(REQUEST, f"{batch_key}/")
        if r.data.get("status") == "succeeded"
    }
    to_send = [r for r in requests if r.key not in earlier]
    outcomes: list[RequestOutcome] = []
    if to_send:
        outcomes = asyncio.run(_execute(client_factory, job, to_send, batch_key))
    by_key = {o.key: o for o in outcomes}
    results: dict[str, dict[str, Any]] = {}
    for request in requests:
        if request.key in earlier:
            results[request.key] = earlier[request.key]
        else:
            results[request.key] = _request_context(
                job, batch_key, tick, request, by_key[request.key]
            )
    # An earlier generation's succeeded request this run did not plan again (its user left
    # the group, was deactivated...) stays part of the batch: its result was produced.
    planned = {r.key for r in requests}
    results.update({key: data for key, data in earlier.items() if key not in planned})
    nothing_to_do = "" if results else nothing_to_do_reason(job, gathered, group)
    if nothing_to_do:
        store.add_batch_event(batch_id, f"nothing to do: {nothing_to_do}", level="WARNING")

    succeeded = sum(1 for r in results.values() if r["status"] == "succeeded")
    failed_keys = [k for k, r in results.items() if r["status"] != "succeeded"]
    metadata = {
        "job_id": job.job_id,
        "batch_id": batch_id,
        "batch_key": batch_key,
        "type": job.type.value,
        "strategy": strategy_for(job).value,
        "tick": tick,
        "purpose_id": job.purpose_id,
        "template": job.template,
        "model": job.model,
        "priority": job.priority,
        "distribution": {"recipients": valid_recipients, "invalid_recipients": invalid_recipients},
    }
    # Always written, so a generation that had work clears an earlier one's reason.
    metadata["nothing_to_do"] = nothing_to_do
    if group is not None:
        metadata["feature_type"] = job.feature_type
        metadata["preference_group"] = group.partition_key
        metadata["group_users"] = {
            **gathered.users,
            "invalid_ids": [u for u in gathered.invalid_user_ids if u in group.preferences],
        }
    this_generation = batch_context(
        metadata=metadata,
        data_source_type=job.type.data_source,
        valid=gathered.valid,
        invalid=gathered.invalid,
        succeeded=succeeded,
        failed=len(failed_keys),
        total=len(results),
        validation=gathered.validation,
        category_type=",".join(job.category_names) or None,
        user_references=gathered.user_references,
    )
    context = merge_batch_contexts(contexts.get(BATCH, batch_key), this_generation)
    writes = [ContextWrite(BATCH, batch_key, context, batch_id)]
    writes += [
        ContextWrite(REQUEST, f"{batch_key}/{key}", data, batch_id) for key, data in results.items()
    ]
    result_writes = _result_writes(job, batch_key, batch_id, tick, requests, results, group)
    writes += result_writes
    by_tenant = {
        w.data["tenant_id"]: {k: w.data[k] for k in ("users", "succeeded", "failed")}
        for w in result_writes
        if w.kind == TENANT_RESULT
    }
    by_feature_type = {
        w.data["feature_type"]: {k: w.data[k] for k in ("users", "succeeded", "failed", "tenants")}
        for w in result_writes
        if w.kind == FEATURE_TYPE_RESULT
    }
    summary = {
        "status": "completed" if not failed_keys else "partial",
        **context["results"]["progress"],
    }
    writes += [
        ContextWrite(
            BATCH_REFERENCE,
            f"{user}/{batch_key}",
            {
                "user_id": user,
                "job_id": job.job_id,
                "batch_id": batch_id,
                "batch_key": batch_key,
                "tick": tick,
                "context": {"kind": BATCH, "key": batch_key},
                "summary": summary,
            },
            batch_id,
        )
        for user in valid_recipients
    ]
    contexts.put_many(writes)
    costs = _record_costs(store, job, batch_id, outcomes)
    deliveries = DeliveryReport()
    if delivery_client_factory is not None and requests:
        deliveries = _deliver_results(
            delivery_client_factory,
            contexts,
            users,
            job,
            BatchOutcome(
                job.job_id,
                job.description or job.job_id,
                batch_key,
                tick,
                summary["status"],
                succeeded,
                len(results),
            ),
            batch_id,
            requests,
            results,
            valid_recipients,
            gathered,
            group,
        )
        log(
            f"{batch_key}: {deliveries.sent} result cards delivered, {deliveries.failed} failed, "
            f"{deliveries.already_delivered} delivered earlier"
        )
        if deliveries.failed:
            store.add_batch_event(
                batch_id,
                f"{deliveries.failed} result deliveries failed (recorded; a rerun of the tick retries them)",
                level="WARNING",
                data={"failures": [list(f) for f in deliveries.failures[:100]]},
            )
    status = BatchStatus.COMPLETED if not failed_keys else BatchStatus.FAILED
    _move(store, batch_id, status)
    store.add_batch_event(
        batch_id,
        f"{succeeded}/{len(results)} requests succeeded",
        data={"failed": failed_keys[:100]},
    )
    return BatchRunResult(
        batch_id=batch_id,
        batch_key=batch_key,
        status=status,
        context=context,
        requests_total=len(results),
        sent_this_run=len(to_send),
        reused=len(results) - len(to_send),
        failed_keys=failed_keys,
        recipients=valid_recipients,
        invalid_recipients=invalid_recipients,
        costs_recorded=costs,
        by_tenant=by_tenant,
        by_feature_type=by_feature_type,
        request_results=list(results.values()),
        user_results=[w for w in result_writes if w.kind == USER_RESULT],
        nothing_to_do=nothing_to_do,
        deliveries=deliveries,
    )


def _deliver_results(
    client_factory: Callable[[], Any],
    contexts: ContextStore,
    users: UsersSource,
    job: JobConfig,
    outcome: BatchOutcome,
    batch_id: int,
    requests: Sequence[Request],
    results: Mapping[str, Mapping[str, Any]],
    recipients: Sequence[str],
    gathered: Gathered,
    group: GroupMembers | None,
) -> DeliveryReport:
    """Deliver the batch's succeeded results: all of them to the distribution recipients,
    and (preference batches) each member's own to that member."""
    succeeded = [r for r in requests if results[r.key]["status"] == "succeeded"]
    own: dict[str, list[str]] = {}
    if group is not None:
        for request in succeeded:
            for uid in request.user_ids:
                own.setdefault(uid, []).append(results[request.key].get("result") or "")
    everyone = list(dict.fromkeys([*recipients, *own]))
    if not everyone:
        return DeliveryReport()
    records = {str(u["id"]): u for u in gathered.inputs.users}
    if missing := [uid for uid in recipients if uid not in records]:
        records.update(users.get_users(missing))
    planned, done = plan_deliveries(
        outcome,
        recipients=recipients,
        batch_results=[results[r.key].get("result") or "" for r in succeeded],
        own_results=own,
        users=records,
        already_delivered=delivered_keys(contexts, everyone, outcome.batch_key),
    )
    report = deliver(
        client_factory,
        planned,
        contexts,
        batch_id=batch_id,
        job_id=job.job_id,
        tick=outcome.tick,
    )
    return replace(report, already_delivered=done)


def failures_first(
    writes: Sequence[ContextWrite], limit: int | None = None
) -> tuple[list[ContextWrite], int]:
    """``writes`` with those whose status is not ``succeeded`` first, then by key, at most
    ``limit``; and how many there are in all."""
    ordered = sorted(writes, key=lambda w: (w.data.get("status") == "succeeded", w.key))
    return (ordered if limit is None else ordered[:limit]), len(writes)


async def _execute(
    client_factory: Callable[[], Any], job: JobConfig, requests: list[Request], batch_key: str
) -> list[RequestOutcome]:
    client: ChatClient = client_factory()
    if hasattr(client, "__aenter__"):
        async with client:  # type: ignore[attr-defined]
            return await execute_requests(client, job, requests, batch_key=batch_key)
    return await execute_requests(client, job, requests, batch_key=batch_key)


def _move(store: BatchStore, batch_id: int, status: BatchStatus) -> None:
    current = store.get_batch(batch_id).status
    if current != status and can_transition_batch(current, status):
        store.set_batch_status(batch_id, status)


def _request_context(
    job: JobConfig, batch_key: str, tick: str, request: Request, outcome: RequestOutcome
) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "batch_key": batch_key,
        "tick": tick,
        "request_key": request.key,
        "status": outcome.status,
        "attempts": outcome.attempts,
        "prompt": request.prompt,
        "user_ids": list(request.user_ids),
        "item_ids": list(request.item_ids),
        "result": outcome.content,
        "model": outcome.model,
        "usage": outcome.usage,
        "error": outcome.error,
        "idempotency_key": outcome.idempotency_key,
    }


def _result_writes(
    job: JobConfig,
    batch_key: str,
    batch_id: int,
    tick: str,
    requests: Sequence[Request],
    results: Mapping[str, Mapping[str, Any]],
    group: GroupMembers | None,
) -> list[ContextWrite]:
    """Results per user, per tenant and (preference batches) per feature type."""
    writes: list[ContextWrite] = []
    tenants: dict[str, dict[str, Any]] = {}
    for request in requests:
        result = results[request.key]
        for uid in request.user_ids:
            tenant = request.tenants.get(uid) or "unknown"
            writes.append(
                ContextWrite(
                    USER_RESULT,
                    f"{uid}/{batch_key}",
                    {
                        "user_id": uid,
                        "tenant_id": tenant,
                        "job_id": job.job_id,
                        "feature_type": job.feature_type,
                        "batch_id": batch_id,
                        "batch_key": batch_key,
                        "tick": tick,
                        "status": result["status"],
                        "request_key": request.key,
                        "result": (result.get("result") or "")[:RESULT_EXCERPT_CHARS],
                        "error": result.get("error"),
                    },
                    batch_id,
                )
            )
            t = tenants.setdefault(
                tenant,
                {
                    "tenant_id": tenant,
                    "job_id": job.job_id,
                    "feature_type": job.feature_type,
                    "batch_id": batch_id,
                    "batch_key": batch_key,
                    "tick": tick,
                    "users": 0,
                    "succeeded": 0,
                    "failed": 0,
                },
            )
            t["users"] += 1
            t["succeeded" if result["status"] == "succeeded" else "failed"] += 1
    writes += [
        ContextWrite(TENANT_RESULT, f"{tenant}/{batch_key}", data, batch_id)
        for tenant, data in tenants.items()
    ]
    if group is not None and job.feature_type:
        users = sum(t["users"] for t in tenants.values())
        ok = sum(t["succeeded"] for t in tenants.values())
        writes.append(
            ContextWrite(
                FEATURE_TYPE_RESULT,
                f"{job.feature_type}/{batch_key}",
                {
                    "feature_type": job.feature_type,
                    "job_id": job.job_id,
                    "preference_group": group.partition_key,
                    "batch_id": batch_id,
                    "batch_key": batch_key,
                    "tick": tick,
                    "users": users,
                    "succeeded": ok,
                    "failed": users - ok,
                    "tenants": sorted(tenants),
                },
                batch_id,
            )
        )
    return writes


def _record_costs(
    store: BatchStore, job: JobConfig, batch_id: int, outcomes: Sequence[RequestOutcome]
) -> int:
    """One ledger entry per call that reached the service (keyed by its idempotency key, so
    a replayed call is never billed twice). A model without a price is noted, not guessed."""
    entries = []
    for o in outcomes:
        if not o.succeeded:
            continue
        usage = reported_or_estimated_usage(o.usage, o.prompt_text, o.content or "")
        try:
            entries.append(
                CostEntry.priced(
                    call_key=o.idempotency_key,
                    batch_id=batch_id,
                    model=job.model,
                    usage=usage,
                    phase=job.job_id,
                )
            )
        except ConfigurationError:
            store.add_batch_event(
                batch_id, f"no price for model {job.model!r}: costs not recorded", level="WARNING"
            )
            return 0
    return store.record_cost_entries(entries) if entries else 0
