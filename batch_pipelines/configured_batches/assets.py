"""The configured batch assets.

- ``configured_batch``: one asset for every static job of the job file, partitioned by job
  id, so the UI shows one row per job with its history of ticks. A run is one tick of one
  job: the schedule passes the tick in the run config (``tick``); a manual launch from the
  UI may leave it empty (now) or name a tick to redo.
- ``preference_batch``: one asset partitioned by preference group (``preference_group``,
  maintained by the preference sensors); a run processes the group's members with their
  own preferences, for the tick its sensor launched it for.

Both run ``runner.run_batch`` and report the standard batch metadata (a unit is a request;
``metadata.standard_metadata``) and the seed's context as metadata, with the status by
tenant, feature type and user (``status_by_user``: at most ``STATUS_TABLE_ROWS`` users, failures
first), the fallbacks taken when a source was down (``category_fallbacks``: category reads
served from the last good snapshot kept in the store; ``preference_fallbacks``: group members
given the job's ``default_preferences`` because the config source could not be read), and the
standard asset checks (``reconciled_completed``, ``nothing_failed``, ``processed_something``:
a batch of no requests warns, it is not "nothing failed").
"""

import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
from batch_pipelines.configured_batches.groups import TICK_TAG as PREFERENCE_TICK_TAG
from batch_pipelines.configured_batches.groups import GroupKey
from batch_pipelines.configured_batches.job_config import JobConfig
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.preferences import ConfigDatabaseClient, Preference
from batch_pipelines.configured_batches.repositories import UserRepository
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.configured_batches.runner import (
    BatchRunResult,
    GroupMembers,
    failures_first,
    run_batch,
)
from batch_pipelines.configured_batches.schedules import TICK_TAG
from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.failures import NO_RUN_RETRY_ON_STEP_FAILURE
from batch_pipelines.metadata import (
    ERROR_CHARS,
    BatchOutcome,
    metadata_table,
    standard_check_results,
    standard_check_specs,
    standard_metadata,
)
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource

GROUP = "configured_batches"
CONCURRENCY_TAG = {"batch_pipelines/concurrency_group": "configured_batches"}
REQUEST_TABLE_ROWS = 200
STATUS_TABLE_ROWS = 200


class BatchTickConfig(dg.Config):
    tick: str = Field(
        default="",
        description="The schedule tick this run is for (ISO time). Empty: the run's tick tag, else now (a manual run).",
    )


def resolve_tick(config_tick: str, run_tags: dict[str, str], tag: str) -> str:
    """The tick of a run: its config, else its tick tag, else now (minute precision, UTC)."""
    if config_tick:
        return config_tick
    if run_tags.get(tag):
        return run_tags[tag]
    return datetime.now(UTC).isoformat(timespec="minutes")


def _requests_table(contexts: list[dict[str, Any]]) -> dg.TableMetadataValue:
    return metadata_table(
        [
            ("request", "string"),
            ("status", "string"),
            ("attempts", "int"),
            ("users", "int"),
            ("error", "string"),
        ],
        (
            {
                "request": c["request_key"],
                "status": c["status"],
                "attempts": int(c.get("attempts") or 0),
                "users": len(c.get("user_ids") or []),
                "error": (c.get("error") or "")[:ERROR_CHARS],
            }
            for c in contexts[:REQUEST_TABLE_ROWS]
        ),
    )


def _status_by_user_table(records: list[dict[str, Any]]) -> dg.TableMetadataValue:
    return metadata_table(
        [
            ("user", "string"),
            ("tenant", "string"),
            ("status", "string"),
            ("request", "string"),
            ("error", "string"),
        ],
        (
            {
                "user": str(r.get("user_id") or ""),
                "tenant": str(r.get("tenant_id") or ""),
                "status": str(r.get("status") or ""),
                "request": str(r.get("request_key") or ""),
                "error": (r.get("error") or "")[:ERROR_CHARS],
            }
            for r in records[:STATUS_TABLE_ROWS]
        ),
    )


def _status_metadata(result: BatchRunResult) -> dict[str, Any]:
    """Status by feature type (the batch's feature type results) and by user (its user
    results, failures first, at most ``STATUS_TABLE_ROWS``), as the CLI shows them."""
    users, total = failures_first(result.user_results, STATUS_TABLE_ROWS)
    return {
        "status_by_feature_type": dg.MetadataValue.json(result.by_feature_type),
        "status_by_user": _status_by_user_table([w.data for w in users]),
        "status_by_user_total": total,
    }


def batch_outcome(
    result: BatchRunResult, cost: Any, tokens: int, duration_seconds: float
) -> BatchOutcome:
    """The batch in the shared vocabulary: its requests are its units."""
    progress = result.context["results"]["progress"]
    return BatchOutcome(
        units_total=result.requests_total,
        units_succeeded=progress["succeeded"],
        units_failed=progress["failed"],
        cost=cost,
        tokens=tokens,
        duration_seconds=duration_seconds,
        batch_id=result.batch_id,
        batch_status=result.status.value,
        reconciled=result.status == BatchStatus.COMPLETED,
        reason=result.nothing_to_do,
    )


def _result(
    context: dg.AssetExecutionContext,
    result: BatchRunResult,
    outcome: BatchOutcome,
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    results = result.context["results"]
    progress = results["progress"]
    requests = list(result.request_results)
    requests.sort(key=lambda r: (r["status"] == "succeeded", r["request_key"]))
    invalid_users_key = (
        "invalid_users" if "invalid_users" in results["items"] else "invalid_categories"
    )
    metadata: dict[str, Any] = {
        **standard_metadata(outcome),
        "batch_key": result.batch_key,
        "requests_sent_this_run": result.sent_this_run,
        "requests_reused": result.reused,
        "progress_percent": progress["percentage"],
        "validation_total": results["validation"]["total"],
        "validation_valid": results["validation"]["valid"],
        "validation_invalid": results["validation"]["invalid"],
        invalid_users_key: dg.MetadataValue.json(results["items"][invalid_users_key][:200]),
        "recipients": dg.MetadataValue.json(result.recipients),
        "status_by_tenant": dg.MetadataValue.json(result.by_tenant),
        **_status_metadata(result),
        "cost_entries_recorded": result.costs_recorded,
        "batch_context": dg.MetadataValue.json(_bounded(result.context)),
        "requests": _requests_table(requests),
        **(extra or {}),
    }
    metadata["nothing_to_do"] = bool(result.nothing_to_do)
    if result.nothing_to_do:
        metadata["nothing_to_do_reason"] = result.nothing_to_do
        context.log.warning(f"{result.batch_key}: nothing to do: {result.nothing_to_do}")
    else:
        context.log.info(
            f"{result.batch_key}: {outcome.units_succeeded}/{outcome.units_total} requests succeeded"
        )
    return dg.MaterializeResult(
        metadata=metadata, check_results=check_results(result, outcome, context.partition_key)
    )


def check_results(
    result: BatchRunResult, outcome: BatchOutcome, partition: str
) -> list[dg.AssetCheckResult]:
    """The standard checks. Zero requests is not "nothing failed": that check and
    ``processed_something`` warn, with the reason, so an empty store or a filter that matches
    nothing is seen, not counted as done. ``nothing_failed`` lists the failed requests."""
    checks = standard_check_results(outcome, partition)
    return [
        c.with_metadata(
            {**c.metadata, "failed_requests": dg.MetadataValue.json(result.failed_keys[:100])}
        )
        if c.check_name == "nothing_failed"
        else c
        for c in checks
    ]


def _bounded(context: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """The context for metadata, with id lists cut to ``limit`` (the store keeps them whole)."""
    results = dict(context["results"])
    results["items"] = {k: v[:limit] for k, v in results["items"].items()}
    return {"results": results}


def _run(
    context: dg.AssetExecutionContext,
    job: JobConfig,
    tick: str,
    batch_store: BatchStoreResource,
    models: ModelsResource,
    configured_jobs: ConfiguredJobsResource,
    teams: TeamsResource,
    group: GroupMembers | None = None,
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    store = batch_store.get_store()
    categories = configured_jobs.category_repository(store.engine)
    started = time.monotonic()
    try:
        result = run_batch(
            store,
            job,
            tick=tick,
            client_factory=models.client,
            users=UserRepository(store.engine),
            categories=categories,
            group=group,
            log=context.log.info,
            delivery_client_factory=teams.client,
        )
    except BatchPipelinesError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    cost, tokens = store.ledger_total(result.batch_id)
    outcome = batch_outcome(result, cost, tokens, time.monotonic() - started)
    if categories.fallbacks:
        context.log.warning(
            f"{categories.fallbacks} category reads served from the last good snapshot ({categories.last_error})"
        )
    if result.deliveries.failed:
        context.log.warning(
            f"{result.deliveries.failed} result deliveries failed (recorded; the batch is not failed "
            f"by them, a rerun of the tick retries them): {result.deliveries.failures[:5]}"
        )
    settings = {
        "deliveries_sent": result.deliveries.sent,
        "deliveries_failed": result.deliveries.failed,
        "deliveries_already_delivered": result.deliveries.already_delivered,
        "category_fallbacks": categories.fallbacks,
        "chunk_size": job.chunk_size,
        "category_cache_ttl_seconds": categories.ttl_seconds,
    }
    return _result(context, result, outcome, {**settings, **(extra or {})})


def current_preferences(
    config: ConfigDatabaseClient, job: JobConfig, stored: dict[str, Preference]
) -> tuple[dict[str, Preference], dict[str, Any]]:
    """The preference of each group member as the config source has it now (their template
    overrides may have changed since the sensor grouped them), read in one call, and the
    metadata saying how it went.

    A member who turned the feature off (or whose preference is gone, without defaults) is
    left out. When the source cannot be read, every member gets the job's
    ``default_preferences``; a job without defaults keeps the preference that put each
    member in the group (the last one seen)."""
    if not stored or not job.feature_type:
        return dict(stored), {
            "preference_fallbacks": 0,
            "preference_source_error": "",
            "preference_members_left_out": 0,
        }
    before = config.fallbacks
    read = config.preferences_for(
        job.feature_type,
        job.default_preferences,
        users={uid: p.tenant_id for uid, p in stored.items()},
    )
    fell_back = config.fallbacks > before
    current = (
        dict(stored) if fell_back and not job.default_preferences else {p.user_id: p for p in read}
    )
    return current, {
        "preference_fallbacks": len(stored) if fell_back else 0,
        "preference_source_error": config.last_error or "",
        "preference_members_left_out": len(stored) - len(current),
    }


def build_configured_batch_asset(
    jobs: list[JobConfig], problems_note: str = ""
) -> dg.AssetsDefinition:
    """The asset of the static jobs ``jobs`` (their ids are its partitions)."""
    job_ids = [j.job_id for j in jobs if not j.type.is_preference]
    description = "One configured batch job's run for one schedule tick; partitions are the job ids of the job file."
    if problems_note:
        description += "\n\n" + problems_note

    @dg.asset(
        name="configured_batch",
        partitions_def=dg.StaticPartitionsDefinition(job_ids),
        group_name=GROUP,
        kinds={"python"},
        op_tags=CONCURRENCY_TAG,
        check_specs=standard_check_specs("configured_batch"),
        description=description,
    )
    def configured_batch(
        context: dg.AssetExecutionContext,
        config: BatchTickConfig,
        batch_store: BatchStoreResource,
        models: ModelsResource,
        configured_jobs: ConfiguredJobsResource,
        teams: TeamsResource,
    ) -> dg.MaterializeResult:
        try:
            job = configured_jobs.job(context.partition_key)
        except BatchPipelinesError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        tick = resolve_tick(config.tick, context.run.tags, TICK_TAG)
        return _run(context, job, tick, batch_store, models, configured_jobs, teams)

    return configured_batch


@dg.asset(
    partitions_def=PREFERENCE_GROUPS,
    group_name=GROUP,
    kinds={"python"},
    op_tags=CONCURRENCY_TAG,
    check_specs=standard_check_specs("preference_batch"),
    description=(
        "One preference group's batch for one tick: the group's members, each with their own "
        "preference and template overrides, processed by the preference job of the group's feature type."
    ),
)
def preference_batch(
    context: dg.AssetExecutionContext,
    config: BatchTickConfig,
    batch_store: BatchStoreResource,
    models: ModelsResource,
    configured_jobs: ConfiguredJobsResource,
    config_service: ConfigServiceResource,
    teams: TeamsResource,
) -> dg.MaterializeResult:
    partition_key = context.partition_key
    try:
        key = GroupKey.parse(partition_key)
        job = configured_jobs.preference_job(key.feature_type)
    except BatchPipelinesError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    store = batch_store.get_store()
    members = PreferenceGroupStore(store.engine).members(partition_key)
    if not members:
        context.log.warning(
            f"preference group {partition_key} has no members (any more): nothing to send"
        )
    preferences, preference_metadata = current_preferences(
        config_service.config_database(store.engine), job, {p.user_id: p for p in members}
    )
    if preference_metadata["preference_fallbacks"]:
        context.log.warning(
            f"preferences unavailable ({preference_metadata['preference_source_error']}): "
            f"{preference_metadata['preference_fallbacks']} members use the job's default preferences"
        )
    group = GroupMembers(partition_key, preferences)
    tick = resolve_tick(config.tick, context.run.tags, PREFERENCE_TICK_TAG)
    return _run(
        context, job, tick, batch_store, models, configured_jobs, teams, group, preference_metadata
    )


preference_batch_job = dg.define_asset_job(
    "preference_batch_job",
    selection=[preference_batch],
    partitions_def=PREFERENCE_GROUPS,
    tags={**CONCURRENCY_TAG, **NO_RUN_RETRY_ON_STEP_FAILURE},
    description="One preference group's batch for one tick (launched by the preference sensors).",
)


def build_configured_batch_job(asset: dg.AssetsDefinition) -> Any:
    return dg.define_asset_job(
        "configured_batch_job",
        selection=[asset],
        partitions_def=asset.partitions_def,
        tags={**CONCURRENCY_TAG, **NO_RUN_RETRY_ON_STEP_FAILURE},
        description="One static configured job for one tick (launched by the job's schedule, or from the UI).",
    )
