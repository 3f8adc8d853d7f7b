"""Benchmark: preference scheduling at 100,000 users.

Preferences change all day and the preference-change sensor runs every 30 seconds, so one
tick must stay far below its interval however many users there are; grouping and user
validation sit on the path of every preference batch. Three benchmarks, each printing the
measure next to its goal and ending with one ``BENCH`` JSON line for ``make bench``:

- ``preference_tick``: one preference-change sensor evaluation over 100,000 users of whom
  1 % (1,000) just changed their preference: reading the changes by cursor, moving the users
  between groups in the store, working out the ``preference_group`` partitions to add and
  delete and claiming the ticks the changes make due. The store is SQLite and already holds
  every user's membership (ingested by earlier, untimed ticks), as it would in production.
  Applying the result (Dagster's daemon adding/deleting partitions) is not timed. Goal 1 s.
- ``preference_grouping``: ``group_users`` over 100,000 preferences. Goal 1 s.
- ``user_validation``: ``UserRepository.validate`` of 100,000 ids (99 % exist) against a
  ``system_users`` table of 100,000 rows, in chunks of 1,000. Goal 1 s.

The measure is the fastest of a few runs (noise only ever adds time); building the data is
not timed. ``BENCH_SCALE`` (float, default 1) scales the user count for a quick check.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from batch_pipelines.configured_batches import sensors
from batch_pipelines.configured_batches.groups import group_users
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.preferences import Preference, PreferenceStore
from batch_pipelines.configured_batches.repositories import UserRepository
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.store.configured_batches_tables import system_users, user_preferences
from benchmarks.common import bench_line
from benchmarks.common import scale as bench_scale

USERS = 100_000
CHANGED_SHARE = 0.01
GOAL_S = 1.0
FEATURES = ("daily_digest", "product_picks", "activity_report", "topic_briefing")
ZONES = (
    "UTC",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
)
WEEKDAYS = ("monday", "wednesday", "friday")


def _report(name: str, measured: float, detail: str) -> None:
    print(
        f"{name}: {measured:.3f} s {detail}, goal {GOAL_S:.0f} s (ratio {measured / GOAL_S:.2f})",
        flush=True,
    )
    bench_line(name, "s", measured, GOAL_S, digits=4)


def _preference(rng: random.Random, number: int, *, updated_at: datetime | None = None) -> dict:
    frequency = rng.choice(("daily", "daily", "weekly", "biweekly", "monthly", "hourly"))
    day = (
        rng.choice(WEEKDAYS)
        if frequency in ("weekly", "biweekly")
        else (str(rng.randint(1, 28)) if frequency == "monthly" else None)
    )
    return {
        "tenant_id": f"tenant-{number % 20:02d}",
        "user_id": f"user-{number:06d}",
        "feature_type": FEATURES[number % len(FEATURES)],
        "frequency": frequency,
        "preferred_day": day,
        "preferred_time": f"{rng.randint(6, 21):02d}:{rng.choice((0, 30)):02d}",
        "timezone": rng.choice(ZONES),
        "template_overrides": {"tone": "formal"} if number % 7 == 0 else {},
        "updated_at": updated_at,
    }


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def bench_grouping(users: int) -> None:
    rng = random.Random(1)
    prefs = [Preference(**_preference(rng, n)) for n in range(users)]
    groups: dict = {}

    def run() -> None:
        nonlocal groups
        groups = group_users(prefs)

    measured = _time(run, repeat=3)
    if sum(len(members) for members in groups.values()) != users:
        raise SystemExit("preference_grouping: not every user was grouped")
    _report(
        "preference_grouping",
        measured,
        f"to group {users:,} preferences into {len(groups):,} groups",
    )


def bench_validation(directory: Path, users: int) -> None:
    engine = (
        BatchStoreResource(database_url=f"sqlite:///{directory / 'users.db'}").get_store().engine
    )
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            system_users.insert(),
            [
                {
                    "id": f"user-{n:06d}",
                    "tenant_id": f"tenant-{n % 20:02d}",
                    "name": None,
                    "email": None,
                    "active": n % 50 != 0,
                    "attributes": {},
                    "created_at": now,
                }
                for n in range(users)
            ],
        )
    # 99 % of the ids exist (2 % of those are inactive), 1 % are unknown.
    ids = [f"user-{n:06d}" if n % 100 else f"ghost-{n:06d}" for n in range(users)]
    repository = UserRepository(engine, chunk_size=1000)
    result = None

    def run() -> None:
        nonlocal result
        result = repository.validate(ids)

    measured = _time(run, repeat=3)
    _report(
        "user_validation",
        measured,
        f"to validate {users:,} ids ({result.stats['valid']:,} valid, {result.stats['invalid']:,} invalid, "
        f"{result.stats['chunks']} queries)",
    )


def bench_tick(directory: Path, users: int) -> None:
    batch_store = BatchStoreResource(database_url=f"sqlite:///{directory / 'preferences.db'}")
    engine = batch_store.get_store().engine
    rng = random.Random(2)
    start = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    records = [_preference(rng, n, updated_at=start) for n in range(users)]
    with engine.begin() as conn:
        conn.execute(
            user_preferences.insert(), [{**r, "enabled": True, "deleted": False} for r in records]
        )
    instance = dg.DagsterInstance.ephemeral()
    resources = {"batch_store": batch_store, "config_service": ConfigServiceResource()}
    now = [start + timedelta(minutes=1)]
    original = sensors.utcnow
    sensors.utcnow = lambda: now[0]
    cursor: str | None = None

    def evaluate() -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return sensors.preference_change_sensor(context)

    def apply(result: dg.SensorResult) -> None:
        """What the daemon does with the result: Dagster's work, not the sensor's, untimed."""
        nonlocal cursor
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(
                    PREFERENCE_GROUPS.name, list(request.partition_keys)
                )
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(PREFERENCE_GROUPS.name, key)
        cursor = result.cursor

    try:
        while True:  # ingest every user (untimed), as earlier ticks did
            result = evaluate()
            apply(result)
            if result.skip_reason is not None:
                break
        best = float("inf")
        changed = int(users * CHANGED_SHARE)
        summary = ""
        for round_ in range(3):
            now[0] += timedelta(minutes=5)
            store = PreferenceStore(engine, clock=lambda: now[0] - timedelta(seconds=30))
            chosen = rng.sample(range(users), changed)
            store.upsert([Preference(**_preference(rng, n)) for n in chosen])  # untimed
            started = time.perf_counter()
            result = evaluate()
            elapsed = time.perf_counter() - started
            apply(result)
            best = min(best, elapsed)
            if round_ == 0:
                moves = sum(len(r.partition_keys) for r in result.dynamic_partitions_requests)
                summary = (
                    f"for one preference-change sensor evaluation over {users:,} users with {changed:,} changed "
                    f"({len(instance.get_dynamic_partitions(PREFERENCE_GROUPS.name)):,} groups, {moves} partitions "
                    f"added or removed, {len(result.run_requests)} runs launched)"
                )
        with engine.connect() as conn:
            members = conn.execute(
                sa.text("select count(*) from preference_group_members")
            ).scalar_one()
        if members != users:
            raise SystemExit(
                f"preference_tick: {members} members after the ticks, expected {users}"
            )
        _report("preference_tick", best, summary)
    finally:
        sensors.utcnow = original


def main() -> None:
    scale = bench_scale()
    users = max(100, int(USERS * scale))
    if scale != 1:
        print(f"bench_preferences: BENCH_SCALE={scale:g}, {users:,} users", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        bench_tick(Path(directory), users)
        bench_grouping(users)
        bench_validation(Path(directory), users)


if __name__ == "__main__":
    main()
