"""Preference groups: the pure rules behind dynamic preference schedules.

Users who want the same feature at the same local time (feature type, frequency, day, time,
timezone) form one group, and each group is one partition of ``preference_group``. Dagster
cannot add schedules without reloading the code location, so the groups' schedules are
computed here from each group's cron (with croniter, in the group's timezone) and a sensor
launches the due ticks. No Dagster and no I/O in this module: the sensors are thin shells
over these functions.

Daylight saving time follows Dagster's own schedules: a local time that does not exist on
the day clocks go forward runs at the first time that exists after it (croniter's answer),
and a local time that happens twice when clocks go back runs once, at its first occurrence.
Hourly groups are the exception to the latter: two real hours passed, so both run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from batch_pipelines.configured_batches.preferences import (
    FREQUENCIES,
    KEY_SEPARATOR,
    MONTH_DAYS,
    WEEKDAYS,
    Preference,
    time_zone,
)
from batch_pipelines.core.errors import ConfigurationError

NO_DAY = "*"
# Hourly groups care about the minute only; their time is written "*:MM".
ANY_HOUR = "*"
# Biweekly groups run on weeks whose number since this Monday is even. A fixed anchor, not
# the ISO week number, whose parity breaks at years with 53 weeks.
BIWEEKLY_ANCHOR = date(1970, 1, 5)
_CRON_WEEKDAY = {day: str((i + 1) % 7) for i, day in enumerate(WEEKDAYS)}  # cron: 0 = Sunday

RUN_KEY_SEPARATOR = "@"
GROUP_TAG = "batch_pipelines/preference_group"
TICK_TAG = "batch_pipelines/preference_tick"
FEATURE_TAG = "batch_pipelines/feature_type"
TRIGGER_TAG = "batch_pipelines/preference_trigger"


@dataclass(frozen=True)
class GroupKey:
    """What users of one preference group share. ``day`` is None for hourly and daily
    groups; ``time`` is "HH:MM", or "*:MM" for hourly groups."""

    feature_type: str
    frequency: str
    day: str | None
    time: str
    timezone: str

    @property
    def partition_key(self) -> str:
        """``feature|frequency|day|time|timezone``, e.g. ``digest|weekly|monday|09:00|Europe/Paris``:
        readable in the UI, stable, and parsed back by ``GroupKey.parse``."""
        return KEY_SEPARATOR.join(
            (self.feature_type, self.frequency, self.day or NO_DAY, self.time, self.timezone)
        )

    @classmethod
    def parse(cls, key: str) -> GroupKey:
        """The group of a partition key; ConfigurationError naming the key and the part."""
        parts = key.split(KEY_SEPARATOR)
        if len(parts) != 5:
            raise ConfigurationError(
                f"preference group {key!r}: expected feature|frequency|day|time|timezone, got {len(parts)} parts"
            )
        feature_type, frequency, day, time_, timezone = parts
        where = f"preference group {key!r}"
        if not feature_type:
            raise ConfigurationError(f"{where}: feature_type is empty")
        if frequency not in FREQUENCIES:
            raise ConfigurationError(
                f"{where}: frequency {frequency!r} is not one of {', '.join(FREQUENCIES)}"
            )
        if frequency in ("hourly", "daily"):
            if day != NO_DAY:
                raise ConfigurationError(f"{where}: day must be {NO_DAY!r} for a {frequency} group")
        elif frequency in ("weekly", "biweekly"):
            if day not in WEEKDAYS:
                raise ConfigurationError(f"{where}: day {day!r} is not a weekday")
        elif not day.isdigit() or int(day) not in MONTH_DAYS or str(int(day)) != day:
            raise ConfigurationError(f"{where}: day {day!r} is not a day of the month 1..28")
        hour, _, minute = time_.partition(":")
        hour_ok = (
            hour == ANY_HOUR
            if frequency == "hourly"
            else (len(hour) == 2 and hour.isdigit() and int(hour) < 24)
        )
        if not (hour_ok and len(minute) == 2 and minute.isdigit() and int(minute) < 60):
            expected = "*:MM" if frequency == "hourly" else "HH:MM"
            raise ConfigurationError(f"{where}: time {time_!r} is not {expected}")
        try:
            time_zone(timezone)
        except (ValueError, KeyError, OSError):
            raise ConfigurationError(
                f"{where}: timezone {timezone!r} is not an IANA timezone"
            ) from None
        return cls(feature_type, frequency, None if day == NO_DAY else day, time_, timezone)


def group_of(p: Preference) -> GroupKey:
    """The group a preference puts its user in."""
    return GroupKey(*_choice(p))


def _choice(p: Preference) -> tuple[str, str, str | None, str, str]:
    """What decides a preference's group, as a plain tuple (cheap to hash, unlike GroupKey)."""
    time_ = f"{ANY_HOUR}:{p.preferred_time[3:]}" if p.frequency == "hourly" else p.preferred_time
    return (p.feature_type, p.frequency, p.preferred_day, time_, p.timezone)


# Read from the model's field dict: item access is cheaper than pydantic attribute access.
_GROUPING_FIELDS = itemgetter(
    "enabled", "deleted", "feature_type", "frequency", "preferred_day", "preferred_time", "timezone"
)


def group_users(prefs: Iterable[Preference]) -> dict[GroupKey, list[str]]:
    """Users of every group; inactive preferences (turned off or deleted) put their user in
    no group. Users who chose the same (feature, frequency, day, time, timezone) appear in
    the order given."""
    # Grouped by the raw field tuple (read in C by itemgetter, hashed in C), then keyed by
    # GroupKey once per distinct choice: per-user Python work is most of the cost at scale.
    by_choice: dict[tuple[Any, ...], list[str]] = {}
    for p in prefs:
        data = vars(p)
        fields = _GROUPING_FIELDS(data)
        members = by_choice.get(fields)
        if members is None:
            by_choice[fields] = [data["user_id"]]
        else:
            members.append(data["user_id"])
    groups: dict[GroupKey, list[str]] = {}
    for (enabled, deleted, *choice), members in by_choice.items():
        if not enabled or deleted:
            continue
        if choice[1] == "hourly":
            choice[3] = f"{ANY_HOUR}:{choice[3][3:]}"
        key = GroupKey(*choice)
        if key in groups:
            groups[key].extend(members)  # hourly choices differing only by the hour
        else:
            groups[key] = members
    return groups


def partition_changes(current: Iterable[str], desired: Iterable[str]) -> tuple[set[str], set[str]]:
    """(partitions to add, partitions to delete) to go from ``current`` to ``desired``."""
    current_set, desired_set = set(current), set(desired)
    return desired_set - current_set, current_set - desired_set


def cron_of(key: GroupKey) -> str:
    """The group's cron in its own timezone. Biweekly groups use their weekly cron; every
    other week is dropped by ``due_ticks`` (cron cannot say "every two weeks")."""
    hour, _, minute = key.time.partition(":")
    minute_ = str(int(minute))
    if key.frequency == "hourly":
        return f"{minute_} * * * *"
    hour_ = str(int(hour))
    if key.frequency == "daily":
        return f"{minute_} {hour_} * * *"
    if key.frequency in ("weekly", "biweekly"):
        return f"{minute_} {hour_} * * {_CRON_WEEKDAY[str(key.day)]}"
    return f"{minute_} {hour_} {key.day} * *"


def is_biweekly_week(day: date) -> bool:
    """Whether a biweekly job runs in the week of ``day`` (even weeks since the anchor).
    Static biweekly schedules should use this too, so both kinds agree on the weeks."""
    return ((day - BIWEEKLY_ANCHOR).days // 7) % 2 == 0


def _is_repeated_wall_time(tick: datetime, zone: ZoneInfo) -> bool:
    """Whether ``tick`` is the second occurrence of a local time repeated when clocks went back."""
    first = tick.replace(tzinfo=None).replace(tzinfo=zone, fold=0)
    return first.astimezone(UTC) != tick.astimezone(UTC)


def due_ticks(
    key: GroupKey, after: datetime, until: datetime, *, limit: int | None = None
) -> list[datetime]:
    """The group's ticks in (``after``, ``until``], as aware UTC datetimes, oldest first.

    Computed by croniter in the group's timezone. ``limit`` keeps only the newest ticks
    (a catch-up after a long outage need not replay a year of hourly runs).
    """
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("due_ticks needs timezone-aware datetimes")
    if until <= after:
        return []
    zone = time_zone(key.timezone)
    iterator = croniter(cron_of(key), after.astimezone(zone))
    ticks: list[datetime] = []
    while True:
        tick = iterator.get_next(datetime)
        if tick > until:
            break
        if key.frequency != "hourly" and _is_repeated_wall_time(tick, zone):
            continue
        if key.frequency == "biweekly" and not is_biweekly_week(tick.date()):
            continue
        ticks.append(tick.astimezone(UTC))
    if limit is not None and len(ticks) > limit:
        return ticks[len(ticks) - limit :]
    return ticks


def _base_ticks(
    iterators: dict[str, croniter],
    time_: str,
    timezone: str,
    hourly: bool,
    after: datetime,
    until: datetime,
) -> list[datetime]:
    """Local ticks in (after, until] of the daily (or hourly) cron at ``time_``, with the
    repeated-wall-time rule applied to daily ones. ``iterators`` reuses one croniter per
    cron across timezones (``set_current`` moves it to the start in the right timezone)."""
    zone = time_zone(timezone)
    hour, _, minute = time_.partition(":")
    cron = f"{int(minute)} * * * *" if hourly else f"{int(minute)} {int(hour)} * * *"
    iterator = iterators.get(cron)
    if iterator is None:
        iterator = iterators[cron] = croniter(cron, after.astimezone(zone))
    else:
        iterator.set_current(after.astimezone(zone), force=True)
    ticks: list[datetime] = []
    while True:
        tick = iterator.get_next(datetime)
        if tick > until:
            return ticks
        if hourly or not _is_repeated_wall_time(tick, zone):
            ticks.append(tick)


def _runs_on(key: GroupKey, local_tick: datetime) -> bool:
    if key.frequency in ("weekly", "biweekly"):
        if WEEKDAYS[local_tick.weekday()] != key.day:
            return False
        return key.frequency == "weekly" or is_biweekly_week(local_tick.date())
    if key.frequency == "monthly":
        return local_tick.day == int(str(key.day))
    return True


def due_ticks_of_groups(
    keys: Iterable[GroupKey], after: datetime, until: datetime
) -> dict[GroupKey, list[datetime]]:
    """``due_ticks`` of many groups at once, with the same answers.

    Thousands of groups share a few hundred (time, timezone) pairs, and building a croniter
    costs far more than reading its next tick; so croniter runs once per pair with the
    daily (or hourly) cron, and each group keeps the ticks that fall on its own days.
    """
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("due_ticks_of_groups needs timezone-aware datetimes")
    base: dict[tuple[str, str, bool], list[datetime]] = {}
    iterators: dict[str, croniter] = {}
    found: dict[GroupKey, list[datetime]] = {}
    for key in keys:
        pair = (key.time, key.timezone, key.frequency == "hourly")
        local = base.get(pair)
        if local is None:
            local = base[pair] = (
                _base_ticks(iterators, *pair, after, until) if until > after else []
            )
        found[key] = [tick.astimezone(UTC) for tick in local if _runs_on(key, tick)]
    return found


def tick_run_key(partition_key: str, tick: datetime) -> str:
    """The run key of one group's tick: a group never runs twice for the same tick."""
    return f"{partition_key}{RUN_KEY_SEPARATOR}{tick.astimezone(UTC).isoformat()}"


def tick_tags(key: GroupKey, tick: datetime, trigger: str) -> dict[str, str]:
    """Tags of a tick's run (filterable in the UI; ``trigger`` says which sensor and why)."""
    return {
        GROUP_TAG: key.partition_key,
        TICK_TAG: tick.astimezone(UTC).isoformat(),
        FEATURE_TAG: key.feature_type,
        TRIGGER_TAG: trigger,
    }


# --------------------------------------------------------------------------- membership


MemberId = tuple[str, str]  # (user_id, feature_type)


@dataclass(frozen=True)
class MembershipPlan:
    """What a batch of preference changes does to group membership.

    ``upserts`` maps each user (per feature type) that is in a group after the changes to
    that group and the preference that put them there; ``removals`` are users in no group
    any more; ``joined`` lists, per group, users that were not in it before.
    """

    upserts: dict[MemberId, tuple[str, Preference]] = field(default_factory=dict)
    removals: set[MemberId] = field(default_factory=set)
    joined: dict[str, set[str]] = field(default_factory=dict)
    left: dict[str, set[str]] = field(default_factory=dict)

    @property
    def moved_users(self) -> int:
        return sum(len(users) for users in self.joined.values())


def plan_membership(
    changes: Iterable[Preference], current: Mapping[MemberId, str]
) -> MembershipPlan:
    """Apply ``changes`` (oldest first; the last change of a user wins) to ``current``
    membership (member -> partition key)."""
    latest: dict[MemberId, Preference] = {}
    for p in changes:
        latest[(p.user_id, p.feature_type)] = p
    plan = MembershipPlan()
    keys: dict[tuple[str, str, str | None, str, str], str] = {}
    for member, p in latest.items():
        before = current.get(member)
        if not p.enabled or p.deleted:
            if before is not None:
                plan.removals.add(member)
                plan.left.setdefault(before, set()).add(member[0])
            continue
        choice = _choice(p)
        after = keys.get(choice)
        if after is None:
            after = keys[choice] = GroupKey(*choice).partition_key
        plan.upserts[member] = (after, p)
        if before != after:
            plan.joined.setdefault(after, set()).add(member[0])
            if before is not None:
                plan.left.setdefault(before, set()).add(member[0])
    return plan


def ticks_made_due(
    groups: Iterable[str], now: datetime, grace: timedelta
) -> list[tuple[str, datetime]]:
    """The ticks of ``groups`` in the last ``grace`` before ``now``: those a preference change
    may make due (the scheduling sensor may have passed them before the group existed).
    Whether one is launched is decided by the tick claims, so a tick runs once at most."""
    keys = {partition_key: GroupKey.parse(partition_key) for partition_key in sorted(groups)}
    ticks = due_ticks_of_groups(keys.values(), now - grace, now)
    return [(partition_key, tick) for partition_key, key in keys.items() for tick in ticks[key]]


@dataclass(frozen=True)
class ScheduledTicks:
    """The ticks a scheduling evaluation launches, and how many older missed ticks it drops."""

    ticks: list[tuple[str, datetime]]
    dropped: int
    invalid_keys: list[str]


def scheduled_ticks(
    partition_keys: Iterable[str], after: datetime, until: datetime, *, max_per_group: int
) -> ScheduledTicks:
    """Every group's ticks in (``after``, ``until``], oldest first, at most ``max_per_group``
    per group (the newest). Keys that are not preference groups are reported, not fatal."""
    ticks: list[tuple[str, datetime]] = []
    dropped = 0
    invalid: list[str] = []
    keys: dict[str, GroupKey] = {}
    for partition_key in partition_keys:
        try:
            keys[partition_key] = GroupKey.parse(partition_key)
        except ConfigurationError:
            invalid.append(partition_key)
    due = due_ticks_of_groups(keys.values(), after, until)
    for partition_key, key in keys.items():
        all_ticks = due[key]
        kept = all_ticks[-max_per_group:] if max_per_group > 0 else []
        dropped += len(all_ticks) - len(kept)
        ticks.extend((partition_key, tick) for tick in kept)
    ticks.sort(key=lambda item: (item[1], item[0]))
    return ScheduledTicks(ticks, dropped, invalid)
