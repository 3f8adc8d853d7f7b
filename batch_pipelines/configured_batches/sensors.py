"""The dynamic schedules of preference groups, as two sensors.

Dagster cannot add schedules without reloading the code location, and groups come and go as
users change their preferences all day. So:

- ``preference_change_sensor`` reads preferences changed since its cursor (``updated_at``),
  moves the users between groups in the store, adds partitions for new groups and deletes
  those whose last user left, and launches what the change makes due: the ticks of the
  changed users' groups in the last ``CHANGE_GRACE`` that no run has been launched for
  (a user who at 09:05 moves to a 09:00 group that did not exist yet gets today's run).
- ``preference_schedule_sensor`` is the dispatcher: each evaluation launches every group's
  ticks between its previous evaluation and now, computed with croniter in the group's
  timezone. Run key ``<group>@<tick>``: a tick never runs twice.

Catch-up: ticks missed while the daemon was down are launched as one run request per missed
tick, marked ``catch_up``, at most ``MAX_CATCH_UP_TICKS`` per group and none older than
``MAX_CATCH_UP_WINDOW``. Not a Dagster backfill: the partitions here are groups, not times,
so a backfill would run each group once and lose which tick (and so which run key) each run
stands for; per-tick requests keep "one run per group and tick" across outages.

Both sensors claim a tick in the store before requesting it, so the two never launch the
same tick, whichever evaluates first and on whichever machine. The logic is in ``groups``
(pure) and ``group_store``; these functions only wire it to Dagster.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
from batch_pipelines.configured_batches.groups import (
    GroupKey,
    partition_changes,
    plan_membership,
    scheduled_ticks,
    tick_run_key,
    tick_tags,
    ticks_made_due,
)
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.store.batch_store import utcnow  # the sensors' clock (tests replace it)

PREFERENCE_BATCH_JOB = "preference_batch_job"
CHANGE_SENSOR = "preference_change_sensor"
SCHEDULE_SENSOR = "preference_schedule_sensor"
# Changes read per evaluation; more wait for the next one (the cursor resumes there).
CHANGES_PER_TICK = 20_000
# Changes younger than this wait for the next evaluation: a write stamped earlier but
# committed later (concurrent writers) must not fall behind the cursor.
CHANGE_SETTLE = timedelta(seconds=5)
# How far back a user who just joined a group still gets the group's latest tick.
CHANGE_GRACE = timedelta(minutes=15)
MAX_CATCH_UP_TICKS = 24
MAX_CATCH_UP_WINDOW = timedelta(days=7)
# A tick launched later than this after its time is reported as a catch-up.
ON_TIME = timedelta(minutes=5)

TRIGGER_SCHEDULE = "schedule"
TRIGGER_CATCH_UP = "catch_up"
TRIGGER_CHANGE = "preference_change"


def _run_request(partition_key: str, tick: datetime, trigger: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=tick_run_key(partition_key, tick),
        partition_key=partition_key,
        tags=tick_tags(GroupKey.parse(partition_key), tick, trigger),
    )


@dg.sensor(
    name=CHANGE_SENSOR,
    job_name=PREFERENCE_BATCH_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Moves users between preference groups as preferences change, keeps the "
    "preference_group partitions in step and launches ticks a change makes due.",
)
def preference_change_sensor(
    context: dg.SensorEvaluationContext,
    batch_store: BatchStoreResource,
    config_service: ConfigServiceResource,
) -> dg.SensorResult:
    store = batch_store.get_store()
    config = config_service.config_database(store.engine)
    groups = PreferenceGroupStore(store.engine)
    now = utcnow()

    changes, cursor = config.changed_since(
        context.cursor or None, limit=CHANGES_PER_TICK, until=now - CHANGE_SETTLE
    )
    plan = plan_membership(
        changes, groups.memberships((p.user_id, p.feature_type) for p in changes)
    )
    groups.apply(plan, now=now)

    existing = set(context.instance.get_dynamic_partitions(PREFERENCE_GROUPS.name))
    touched = {partition_key for partition_key, _ in plan.upserts.values()}
    if changes:
        # Only the groups the changes touched can appear or empty: O(changes), not O(users).
        to_add = touched - existing
        emptied = set(plan.left) - groups.with_members(plan.left)
        to_delete = (emptied & existing) - touched
    else:
        # An idle tick reconciles every group, so partitions changed by hand come back in step.
        to_add, to_delete = partition_changes(existing, groups.partition_keys())
    # Every group a change touched, not only those users joined: a result lost after the
    # membership was written finds no "joined" on its retry, yet must re-request its ticks
    # (claims it already holds come back, Dagster's run keys drop the duplicates). Ticks the
    # scheduling sensor already claimed stay with it.
    due = groups.claim_ticks(CHANGE_SENSOR, ticks_made_due(touched, now, CHANGE_GRACE), now=now)

    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_add:
        requests.append(PREFERENCE_GROUPS.build_add_request(sorted(to_add)))
    if to_delete:
        requests.append(PREFERENCE_GROUPS.build_delete_request(sorted(to_delete)))
    summary = (
        f"{len(changes)} preference changes: {plan.moved_users} users joined a group, "
        f"{len(plan.removals)} left scheduling; {len(to_add)} groups added, {len(to_delete)} removed, "
        f"{len(due)} ticks launched"
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=[_run_request(key, tick, TRIGGER_CHANGE) for key, tick in due],
        dynamic_partitions_requests=requests,
        cursor=cursor or context.cursor,
        skip_reason=None if (changes or requests) else "no preference changed",
    )


def _evaluated_at(cursor: str | None) -> datetime | None:
    if not cursor:
        return None
    try:
        return datetime.fromisoformat(json.loads(cursor)["evaluated_at"]).astimezone(UTC)
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"{SCHEDULE_SENSOR}: cursor {cursor!r} is not {{'evaluated_at': <iso time>}}"
        ) from None


@dg.sensor(
    name=SCHEDULE_SENSOR,
    job_name=PREFERENCE_BATCH_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches each preference group's run when its local time comes (one run "
    "per group and tick), catching up ticks missed while the daemon was down.",
)
def preference_schedule_sensor(
    context: dg.SensorEvaluationContext, batch_store: BatchStoreResource
) -> dg.SensorResult:
    now = utcnow()
    cursor = json.dumps({"evaluated_at": now.isoformat()})
    previous = _evaluated_at(context.cursor)
    if previous is None:
        return dg.SensorResult(skip_reason="first evaluation: scheduling starts now", cursor=cursor)
    after = max(previous, now - MAX_CATCH_UP_WINDOW)
    keys = context.instance.get_dynamic_partitions(PREFERENCE_GROUPS.name)
    found = scheduled_ticks(keys, after, now, max_per_group=MAX_CATCH_UP_TICKS)
    if found.invalid_keys:
        context.log.warning(f"not preference groups, ignored: {', '.join(found.invalid_keys[:10])}")
    if found.dropped or after > previous:
        context.log.warning(
            f"{found.dropped} missed ticks older than the newest {MAX_CATCH_UP_TICKS} per group "
            f"(or than {MAX_CATCH_UP_WINDOW}) were not caught up"
        )
    owned = PreferenceGroupStore(batch_store.get_store().engine).claim_ticks(
        SCHEDULE_SENSOR, found.ticks, now=now
    )
    requests = [
        _run_request(key, tick, TRIGGER_SCHEDULE if now - tick <= ON_TIME else TRIGGER_CATCH_UP)
        for key, tick in owned
    ]
    return dg.SensorResult(
        run_requests=requests,
        cursor=cursor,
        skip_reason=None
        if requests
        else f"no group due between {after.isoformat()} and {now.isoformat()}",
    )


PREFERENCE_SENSORS = [preference_change_sensor, preference_schedule_sensor]
