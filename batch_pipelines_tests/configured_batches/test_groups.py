"""Preference groups: keys, grouping, partition changes, crons and due ticks (pure)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.configured_batches.groups import (
    GroupKey,
    cron_of,
    due_ticks,
    due_ticks_of_groups,
    group_of,
    group_users,
    is_biweekly_week,
    partition_changes,
    plan_membership,
    scheduled_ticks,
    tick_run_key,
    ticks_made_due,
)
from batch_pipelines.configured_batches.preferences import Preference
from batch_pipelines.core.errors import ConfigurationError


def pref(user="u1", feature="digest", frequency="daily", day=None, time="09:00", tz="UTC", **kw):
    return Preference(
        tenant_id="t1",
        user_id=user,
        feature_type=feature,
        frequency=frequency,
        preferred_day=day,
        preferred_time=time,
        timezone=tz,
        **kw,
    )


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_a_partition_key_is_readable_and_parses_back_to_the_same_group():
    key = group_of(pref(frequency="weekly", day="Mon", time="9:05", tz="Europe/Paris"))
    assert key.partition_key == "digest|weekly|monday|09:05|Europe/Paris"
    assert GroupKey.parse(key.partition_key) == key


def test_hourly_groups_keep_only_the_minute_and_daily_groups_drop_the_day():
    assert (
        group_of(pref(frequency="hourly", time="17:45")).partition_key == "digest|hourly|*|*:45|UTC"
    )
    assert group_of(pref(frequency="daily", day="friday")).day is None


@pytest.mark.parametrize(
    ("key", "part"),
    [
        ("digest|daily|*|09:00", "got 4 parts"),
        ("digest|yearly|*|09:00|UTC", "frequency"),
        ("digest|weekly|someday|09:00|UTC", "day"),
        ("digest|monthly|31|09:00|UTC", "day"),
        ("digest|daily|*|25:00|UTC", "time"),
        ("digest|daily|*|09:00|Mars/Olympus", "timezone"),
    ],
)
def test_a_malformed_partition_key_is_refused_naming_the_key_and_the_part(key, part):
    with pytest.raises(ConfigurationError, match=part) as raised:
        GroupKey.parse(key)
    assert key in str(raised.value)


def test_users_with_the_same_choice_share_a_group_and_inactive_users_are_in_none():
    groups = group_users(
        [
            pref("a"),
            pref("b"),
            pref("c", time="10:00"),
            pref("d", enabled=False),
            pref("e", deleted=True),
        ]
    )
    assert {k.partition_key: v for k, v in groups.items()} == {
        "digest|daily|*|09:00|UTC": ["a", "b"],
        "digest|daily|*|10:00|UTC": ["c"],
    }


@st.composite
def choices(draw):
    frequency = draw(st.sampled_from(["hourly", "daily", "weekly", "biweekly", "monthly"]))
    day = (
        draw(st.sampled_from(["3", "15"]))
        if frequency == "monthly"
        else draw(st.sampled_from(["monday", "fri"]))
    )
    return pref(
        user=draw(st.text("abcdef", min_size=1, max_size=4)),
        frequency=frequency,
        day=day,
        time=draw(st.sampled_from(["07:00", "09:30", "18:45"])),
        tz=draw(st.sampled_from(["UTC", "Europe/Paris", "America/New_York"])),
        enabled=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(choices(), max_size=30))
def test_every_active_user_is_in_exactly_the_group_of_their_preference(prefs):
    groups = group_users(prefs)
    placed = [(user, key) for key, users in groups.items() for user in users]
    expected = [(p.user_id, group_of(p)) for p in prefs if p.active]
    assert sorted(placed, key=str) == sorted(expected, key=str)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.text("abc", max_size=3)), st.sets(st.text("abc", max_size=3)))
def test_partition_changes_take_current_partitions_exactly_to_the_desired_ones(current, desired):
    to_add, to_delete = partition_changes(current, desired)
    assert (current | to_add) - to_delete == desired
    assert not to_add & current and to_delete <= current


@pytest.mark.parametrize(
    ("frequency", "day", "time", "cron"),
    [
        ("hourly", None, "08:15", "15 * * * *"),
        ("daily", None, "07:30", "30 7 * * *"),
        ("weekly", "sunday", "09:00", "0 9 * * 0"),
        ("biweekly", "monday", "08:00", "0 8 * * 1"),
        ("monthly", "15", "06:05", "5 6 15 * *"),
    ],
)
def test_each_frequency_has_its_cron(frequency, day, time, cron):
    assert cron_of(group_of(pref(frequency=frequency, day=day, time=time))) == cron


def test_due_ticks_are_in_the_groups_timezone_exclusive_of_after_and_inclusive_of_until():
    key = group_of(pref(time="09:00", tz="Europe/Paris"))
    ticks = due_ticks(key, utc(2026, 11, 24, 8, 0), utc(2026, 11, 26, 8, 0))
    assert ticks == [utc(2026, 11, 25, 8, 0), utc(2026, 11, 26, 8, 0)]


def test_a_time_skipped_when_clocks_go_forward_runs_once_at_the_first_time_that_exists():
    key = group_of(pref(time="02:30", tz="America/New_York"))
    ticks = due_ticks(key, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    # 8 March: 02:30 does not exist; 03:00 EDT is 07:00 UTC. 9 March: 02:30 EDT.
    assert ticks == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]


def test_a_time_repeated_when_clocks_go_back_runs_once_even_if_the_window_starts_between():
    key = group_of(pref(time="01:30", tz="America/New_York"))
    assert due_ticks(key, utc(2026, 10, 31, 12), utc(2026, 11, 1, 12)) == [utc(2026, 11, 1, 5, 30)]
    # A window that opens after the first 01:30 (EDT) must not run the second (EST) one.
    assert due_ticks(key, utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 12)) == []


def test_an_hourly_group_runs_both_real_hours_of_the_repeated_hour():
    key = group_of(pref(frequency="hourly", time="00:30", tz="America/New_York"))
    ticks = due_ticks(key, utc(2026, 11, 1, 5), utc(2026, 11, 1, 7))
    assert ticks == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]


def test_a_biweekly_group_runs_every_other_week_across_a_year_end():
    key = group_of(pref(frequency="biweekly", day="monday", time="08:00"))
    ticks = due_ticks(key, utc(2026, 11, 1), utc(2027, 3, 1))
    gaps = {(b - a) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert gaps == {timedelta(weeks=2)}
    assert all(is_biweekly_week(t.date()) for t in ticks)
    assert is_biweekly_week(date(1970, 1, 5)) and not is_biweekly_week(date(1970, 1, 12))


group_keys = st.builds(
    lambda frequency, day, monthday, hour, minute, tz: GroupKey(
        "digest",
        frequency,
        {"weekly": day, "biweekly": day, "monthly": monthday}.get(frequency),
        f"*:{minute}" if frequency == "hourly" else f"{hour}:{minute}",
        tz,
    ),
    st.sampled_from(["hourly", "daily", "weekly", "biweekly", "monthly"]),
    st.sampled_from(["sunday", "monday", "saturday"]),
    st.sampled_from(["1", "8", "28"]),
    st.sampled_from(["00", "01", "02", "03", "23"]),
    st.sampled_from(["00", "30", "45"]),
    st.sampled_from(["America/New_York", "Europe/Paris", "Australia/Lord_Howe", "UTC"]),
)
# Windows around the 2026 DST changes (March, October, November) and ordinary days.
window_starts = st.builds(
    lambda day, minutes: day + timedelta(minutes=minutes),
    st.sampled_from(
        [utc(2026, 3, 7), utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 10, 31), utc(2026, 6, 1)]
    ),
    st.integers(0, 60 * 24 * 3),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(group_keys, min_size=1, max_size=6), window_starts, st.integers(1, 60 * 24 * 20))
def test_ticks_of_many_groups_at_once_are_exactly_each_groups_own_ticks(keys, after, minutes):
    until = after + timedelta(minutes=minutes)
    together = due_ticks_of_groups(keys, after, until)
    assert together == {key: due_ticks(key, after, until) for key in keys}


def test_due_ticks_keep_only_the_newest_when_limited():
    key = group_of(pref(frequency="hourly", time="00:00"))
    ticks = due_ticks(key, utc(2026, 1, 1), utc(2026, 1, 2), limit=3)
    assert ticks == [utc(2026, 1, 1, 22), utc(2026, 1, 1, 23), utc(2026, 1, 2, 0)]


def test_due_ticks_refuse_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_ticks(group_of(pref()), datetime(2026, 1, 1), utc(2026, 1, 2))


def test_a_preference_change_moves_the_user_and_a_deletion_takes_them_out():
    old = "digest|daily|*|09:00|UTC"
    current = {("a", "digest"): old, ("b", "digest"): old}
    plan = plan_membership([pref("a", time="10:00"), pref("b", deleted=True), pref("c")], current)
    assert plan.upserts[("a", "digest")][0] == "digest|daily|*|10:00|UTC"
    assert plan.removals == {("b", "digest")}
    assert plan.joined == {"digest|daily|*|10:00|UTC": {"a"}, old: {"c"}}
    assert plan.left == {old: {"a", "b"}}


def test_the_last_change_of_a_user_in_a_batch_wins():
    plan = plan_membership([pref("a", time="10:00"), pref("a", time="11:00")], {})
    assert plan.upserts[("a", "digest")][0] == "digest|daily|*|11:00|UTC"


def test_a_change_makes_due_only_ticks_within_the_grace_period():
    now = utc(2026, 11, 24, 9, 5)
    due = ticks_made_due(
        ["digest|daily|*|09:00|UTC", "digest|daily|*|08:00|UTC"], now, timedelta(minutes=15)
    )
    assert due == [("digest|daily|*|09:00|UTC", utc(2026, 11, 24, 9, 0))]


def test_scheduled_ticks_cap_catch_up_per_group_and_report_foreign_keys():
    found = scheduled_ticks(
        ["digest|hourly|*|*:00|UTC", "not-a-group"],
        utc(2026, 1, 1),
        utc(2026, 1, 1, 10),
        max_per_group=4,
    )
    assert [t for _, t in found.ticks] == [utc(2026, 1, 1, h) for h in (7, 8, 9, 10)]
    assert found.dropped == 6 and found.invalid_keys == ["not-a-group"]


def test_the_run_key_names_the_group_and_the_tick_in_utc():
    tick = datetime(2026, 11, 24, 10, 0, tzinfo=UTC) + timedelta(0)
    assert (
        tick_run_key("digest|daily|*|10:00|UTC", tick)
        == "digest|daily|*|10:00|UTC@2026-11-24T10:00:00+00:00"
    )
