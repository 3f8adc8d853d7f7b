"""The preference sensors on an ephemeral instance with the preference_group partitions.

The daemon applies a SensorResult's partition requests and launches its run requests; here
``apply`` does the former so that consecutive evaluations see what the daemon would.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from batch_pipelines.configured_batches import sensors
from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
from batch_pipelines.configured_batches.groups import GROUP_TAG, TICK_TAG, TRIGGER_TAG
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.preferences import PreferenceStore
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines_tests.configured_batches.family_tables import empty_family_tables

NINE = "digest|daily|*|09:00|UTC"
TEN = "digest|daily|*|10:00|UTC"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


class World:
    """A store, an ephemeral instance and a settable clock shared by both sensors."""

    def __init__(self, tmp_path, monkeypatch):
        self.batch_store = BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}")
        self.engine = empty_family_tables(self.batch_store.get_store().engine)
        self.instance = dg.DagsterInstance.ephemeral()
        self.now = utc(2026, 11, 24, 8, 0)
        monkeypatch.setattr(sensors, "utcnow", lambda: self.now)
        # Writes land a little before the sensors evaluate (they hold back the last seconds).
        self.prefs = PreferenceStore(self.engine, clock=lambda: self.now - timedelta(seconds=10))
        self.groups = PreferenceGroupStore(self.engine)
        self.change_cursor: str | None = None
        self.schedule_cursor: str | None = None

    def set(self, user, time="09:00", **kw):
        self.prefs.upsert(
            [
                {
                    "tenant_id": "t1",
                    "user_id": user,
                    "feature_type": "digest",
                    "frequency": kw.pop("frequency", "daily"),
                    "preferred_time": time,
                    "timezone": kw.pop("timezone", "UTC"),
                    **kw,
                }
            ]
        )

    def partitions(self):
        return set(self.instance.get_dynamic_partitions(PREFERENCE_GROUPS.name))

    def apply(self, result):
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)

    def change_tick(self):
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.change_cursor,
            resources={"batch_store": self.batch_store, "config_service": ConfigServiceResource()},
        )
        result = sensors.preference_change_sensor(context)
        self.apply(result)
        self.change_cursor = result.cursor
        return result

    def schedule_tick(self):
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.schedule_cursor,
            resources={"batch_store": self.batch_store},
        )
        result = sensors.preference_schedule_sensor(context)
        self.schedule_cursor = result.cursor
        return result


@pytest.fixture
def world(tmp_path, monkeypatch):
    return World(tmp_path, monkeypatch)


def test_new_preferences_create_their_group_partition_in_one_tick(world):
    world.set("a")
    world.set("b")
    world.set("c", time="10:00")
    result = world.change_tick()
    assert world.partitions() == {NINE, TEN}
    assert result.run_requests == []  # 08:00: nothing of these groups is due
    assert [p.user_id for p in world.groups.members(NINE)] == ["a", "b"]
    again = world.change_tick()
    assert (
        again.skip_reason.skip_message == "no preference changed" and again.cursor == result.cursor
    )


def test_a_preference_change_moves_the_user_to_the_right_group_within_one_tick_and_the_next_run_uses_it(
    world,
):
    world.set("a")
    world.set("b")
    world.change_tick()
    world.now = utc(2026, 11, 24, 8, 30)
    world.set("a", time="10:00", template_overrides={"tone": "formal"})
    world.change_tick()
    assert [p.user_id for p in world.groups.members(NINE)] == ["b"]
    (moved,) = world.groups.members(TEN)
    assert (moved.user_id, moved.preferred_time, moved.template_overrides) == (
        "a",
        "10:00",
        {"tone": "formal"},
    )
    assert world.partitions() == {NINE, TEN}


def test_deleting_the_last_user_of_a_group_removes_its_partition(world):
    world.set("a")
    world.set("b", time="10:00")
    world.change_tick()
    world.now = utc(2026, 11, 24, 8, 30)
    world.prefs.delete("a", "digest")
    result = world.change_tick()
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [[NINE]]
    assert world.partitions() == {TEN}
    world.set("b", enabled=False)  # turning the feature off empties a group too
    world.change_tick()
    assert world.partitions() == set()


def test_a_change_younger_than_the_settle_time_is_read_by_the_next_evaluation(world):
    PreferenceStore(world.engine, clock=lambda: world.now).upsert(
        [{"tenant_id": "t1", "user_id": "a", "feature_type": "digest", "preferred_time": "09:00"}]
    )
    assert world.change_tick().skip_reason is not None and world.partitions() == set()
    world.now += sensors.CHANGE_SETTLE
    world.change_tick()
    assert world.partitions() == {NINE}


def test_an_idle_tick_puts_partitions_changed_by_hand_back_in_step_with_the_groups(world):
    world.set("a")
    world.change_tick()
    world.instance.delete_dynamic_partition(PREFERENCE_GROUPS.name, NINE)
    world.instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, ["digest|daily|*|23:00|UTC"])
    result = world.change_tick()
    assert not result.skip_reason and world.partitions() == {NINE}


def test_a_change_that_makes_a_tick_due_launches_it_once_and_the_schedule_sensor_leaves_it(world):
    world.now = utc(2026, 11, 24, 8, 58)
    world.schedule_tick()  # the dispatcher has been running; no group exists yet
    world.now = utc(2026, 11, 24, 9, 5)
    world.set("late")  # at 09:05, a user asks for 09:00: today's 09:00 is due
    result = world.change_tick()
    (request,) = result.run_requests
    assert request.partition_key == NINE
    assert request.run_key == f"{NINE}@2026-11-24T09:00:00+00:00"
    assert request.tags[TRIGGER_TAG] == sensors.TRIGGER_CHANGE and request.tags[GROUP_TAG] == NINE
    scheduled = world.schedule_tick()  # its window (08:58, 09:05] holds 09:00, already launched
    assert scheduled.run_requests == []


def test_the_schedule_sensor_launches_each_group_when_its_local_time_comes_with_a_run_key_per_tick(
    world,
):
    world.now = utc(2026, 11, 24, 7, 0)
    world.set("paris", time="09:00", timezone="Europe/Paris")
    world.set("utc", time="09:00")
    world.change_tick()
    first = world.schedule_tick()
    assert first.run_requests == [] and "first evaluation" in first.skip_reason.skip_message
    world.now = utc(2026, 11, 24, 8, 1)  # 09:01 in Paris
    (paris,) = world.schedule_tick().run_requests
    assert paris.partition_key == "digest|daily|*|09:00|Europe/Paris"
    assert paris.tags[TICK_TAG] == "2026-11-24T08:00:00+00:00"
    assert paris.tags[TRIGGER_TAG] == sensors.TRIGGER_SCHEDULE
    world.now = utc(2026, 11, 24, 9, 0)
    (at_nine,) = world.schedule_tick().run_requests
    assert at_nine.run_key == f"{NINE}@2026-11-24T09:00:00+00:00"
    assert world.schedule_tick().run_requests == []  # (09:00, 09:00]: nothing new


def test_a_lost_evaluation_re_requests_the_same_run_keys_so_dagster_drops_the_duplicates(world):
    world.set("a")
    world.change_tick()
    world.schedule_tick()
    cursor = world.schedule_cursor
    world.now = utc(2026, 11, 24, 9, 1)
    first = world.schedule_tick()
    world.schedule_cursor = cursor  # the result was lost: the cursor never moved
    retried = world.schedule_tick()
    assert (
        [r.run_key for r in retried.run_requests] == [r.run_key for r in first.run_requests] != []
    )


def test_ticks_missed_while_the_daemon_was_down_are_caught_up_one_run_per_tick(world):
    world.now = utc(2026, 11, 24, 6, 20)
    world.set("hourly", time="00:00", frequency="hourly")
    world.change_tick()
    world.now = utc(2026, 11, 24, 6, 30)
    world.schedule_tick()
    world.now = utc(2026, 11, 24, 9, 2)  # down from 06:30 to 09:02
    requests = world.schedule_tick().run_requests
    assert [(r.tags[TICK_TAG][11:16], r.tags[TRIGGER_TAG]) for r in requests] == [
        ("07:00", "catch_up"),
        ("08:00", "catch_up"),
        ("09:00", "schedule"),
    ]
    assert len({r.run_key for r in requests}) == 3


def test_a_long_outage_catches_up_at_most_the_newest_ticks_per_group(world):
    world.set("hourly", time="00:00", frequency="hourly")
    world.change_tick()
    world.schedule_tick()
    world.now = utc(2026, 11, 27, 8, 0)  # three days later
    requests = world.schedule_tick().run_requests
    assert len(requests) == sensors.MAX_CATCH_UP_TICKS
    assert requests[-1].tags[TICK_TAG] == "2026-11-27T08:00:00+00:00"


@pytest.mark.parametrize(
    ("time", "before", "after", "expected"),
    [
        # 8 March 2026, New York springs forward at 02:00: 02:30 does not exist, runs at 03:00 EDT.
        ("02:30", utc(2026, 3, 8, 6, 59), utc(2026, 3, 8, 7, 1), ["2026-03-08T07:00:00+00:00"]),
        # 1 November 2026, New York falls back at 02:00: 01:30 happens twice, runs at the first.
        ("01:30", utc(2026, 11, 1, 5, 29), utc(2026, 11, 1, 5, 31), ["2026-11-01T05:30:00+00:00"]),
        ("01:30", utc(2026, 11, 1, 6, 29), utc(2026, 11, 1, 6, 31), []),
    ],
)
def test_daylight_saving_changes_run_a_daily_group_once_on_the_day(
    world, time, before, after, expected
):
    world.now = before
    world.set("ny", time=time, timezone="America/New_York")
    world.change_tick()
    world.schedule_tick()
    world.now = after
    result = world.schedule_tick()
    assert [r.tags[TICK_TAG] for r in result.run_requests] == expected


def test_a_corrupt_schedule_cursor_is_reported_with_its_value(world):
    world.schedule_cursor = json.dumps({"when": "yesterday"})
    with pytest.raises(ConfigurationError, match="yesterday"):
        world.schedule_tick()


def test_dagster_resolves_a_run_for_a_partition_added_in_the_same_result(tmp_path, monkeypatch):
    """The daemon path: run requests are checked against the job's partitions including
    the partitions the same result adds (needs a persistent instance)."""

    @dg.asset(partitions_def=PREFERENCE_GROUPS, name="preference_batch")
    def stub_preference_batch() -> None: ...

    job = dg.define_asset_job(sensors.PREFERENCE_BATCH_JOB, selection=[stub_preference_batch])
    batch_store = BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    empty_family_tables(batch_store.get_store().engine)
    monkeypatch.setattr(sensors, "utcnow", lambda: utc(2026, 11, 24, 9, 5))
    PreferenceStore(batch_store.get_store().engine, clock=lambda: utc(2026, 11, 24, 9, 4)).upsert(
        [{"tenant_id": "t1", "user_id": "a", "feature_type": "digest", "preferred_time": "09:00"}]
    )
    resources = {"batch_store": batch_store, "config_service": ConfigServiceResource()}
    defs = dg.Definitions(
        assets=[stub_preference_batch], jobs=[job], sensors=sensors.PREFERENCE_SENSORS
    )
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            definitions=defs,
            resources=resources,
        )
        data = sensors.preference_change_sensor.evaluate_tick(context)
    (request,) = data.run_requests
    assert request.partition_key == NINE and request.tags["dagster/partition"] == NINE


def test_membership_and_tick_claims_hold_on_both_backends(store):
    from batch_pipelines.configured_batches.groups import plan_membership
    from batch_pipelines.configured_batches.preferences import Preference

    engine = empty_family_tables(store.engine)
    groups = PreferenceGroupStore(engine)

    def pref(user, time):
        return Preference(tenant_id="t1", user_id=user, feature_type="digest", preferred_time=time)

    groups.apply(plan_membership([pref("a", "09:00"), pref("b", "09:00")], {}))
    current = groups.memberships([("a", "digest"), ("b", "digest"), ("zz", "digest")])
    assert current == {("a", "digest"): NINE, ("b", "digest"): NINE}
    plan = plan_membership([pref("a", "10:00")], current)
    groups.apply(plan)
    groups.apply(plan)  # applying twice changes nothing
    assert groups.partition_keys() == {NINE, TEN} and groups.member_counts() == {NINE: 1, TEN: 1}

    ticks = [(NINE, utc(2026, 11, 24, 9)), (TEN, utc(2026, 11, 24, 10))]
    assert groups.claim_ticks("scheduler", ticks[:1]) == ticks[:1]
    assert groups.claim_ticks("changes", ticks) == ticks[1:]  # 09:00 belongs to the scheduler
    assert groups.claim_ticks("scheduler", ticks) == ticks[:1]  # its own claim comes back
    assert groups.claims(NINE) == {utc(2026, 11, 24, 9): "scheduler"}
