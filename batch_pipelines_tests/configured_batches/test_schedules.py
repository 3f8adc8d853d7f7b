"""The sample's schedules: cron and timezone per job, biweekly weeks, priorities, DST, and
the queue promotion that keeps low priorities from starving."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils.schedules import cron_string_iterator
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
from batch_pipelines.configured_batches.definitions import configured_batches_definitions
from batch_pipelines.configured_batches.groups import FEATURE_TAG
from batch_pipelines.configured_batches.job_config import (
    SAMPLE_JOBS_FILE,
    ScheduleSpec,
    load_job_configuration,
)
from batch_pipelines.configured_batches.monitors import configured_batches_queue_promotion
from batch_pipelines.configured_batches.schedules import (
    BASE_PRIORITY_TAG,
    PRIORITY_TAG,
    cron_for,
    promoted_priority,
)
from batch_pipelines.resources import default_resources

from .batch_data import job_file

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def _definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        configured_batches_definitions(str(SAMPLE_JOBS_FILE)),
        dg.Definitions(resources=default_resources()),
    )


def _schedules() -> dict[str, dg.ScheduleDefinition]:
    return {s.name: s for s in _definitions().schedules}


def _evaluate(schedule: dg.ScheduleDefinition, when: datetime):
    repository = _definitions().get_repository_def()
    with dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=repository
    ) as context:
        result = schedule.evaluate_tick(context)
        return list(result.run_requests or []), result.skip_message


def test_every_static_job_of_the_sample_has_a_schedule_with_its_cron_and_timezone():
    schedules = _schedules()
    assert {name: (s.cron_schedule, s.execution_timezone) for name, s in schedules.items()} == {
        "user_welcome_notes_schedule": ("30 7 * * *", "Europe/Paris"),
        "product_descriptions_schedule": ("15 * * * *", "UTC"),
        "team_activity_digest_schedule": ("0 8 * * 1", "America/New_York"),
        "audience_trend_analysis_schedule": ("0 6 1 * *", "Europe/London"),
        "audience_niche_correlation_schedule": ("0 5 * * 1-5", "Asia/Tokyo"),
    }
    assert all(s.job_name == "configured_batch_job" for s in schedules.values())


def test_a_tick_launches_its_job_partition_with_the_tick_and_the_jobs_priority():
    schedule = _schedules()["user_welcome_notes_schedule"]
    runs, _ = _evaluate(schedule, datetime(2026, 11, 24, 7, 30, tzinfo=PARIS))
    (run,) = runs
    assert run.partition_key == "user_welcome_notes"
    assert run.run_key == "user_welcome_notes:2026-11-24T07:30+01:00"
    assert run.run_config["ops"]["configured_batch"]["config"]["tick"] == "2026-11-24T07:30+01:00"
    assert run.tags[PRIORITY_TAG] == "5"
    other, _ = _evaluate(
        _schedules()["audience_trend_analysis_schedule"],
        datetime(2026, 12, 1, 6, 0, tzinfo=ZoneInfo("Europe/London")),
    )
    assert int(other[0].tags[PRIORITY_TAG]) > int(
        run.tags[PRIORITY_TAG]
    )  # launched first when both are queued


def test_across_the_autumn_dst_change_a_paris_job_stays_at_seven_thirty_local_time():
    schedule = _schedules()["user_welcome_notes_schedule"]
    start = datetime(2026, 10, 23, 12, 0, tzinfo=UTC).timestamp()
    ticks = list(
        itertools.islice(
            cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone), 4
        )
    )
    assert [t.astimezone(PARIS).strftime("%m-%d %H:%M") for t in ticks] == [
        "10-24 07:30",
        "10-25 07:30",
        "10-26 07:30",
        "10-27 07:30",
    ]
    # Clocks went back on 25 October: the same local time is one hour later in UTC.
    assert [t.astimezone(UTC).hour for t in ticks] == [5, 6, 6, 6]
    assert ticks[1].astimezone(UTC) - ticks[0].astimezone(UTC) == timedelta(hours=25)
    runs, _ = _evaluate(schedule, ticks[2])
    assert runs[0].run_key == "user_welcome_notes:2026-10-26T07:30+01:00"


def test_across_the_spring_dst_change_a_new_york_biweekly_job_keeps_eight_oclock_every_other_monday():
    schedule = _schedules()["team_activity_digest_schedule"]
    start = datetime(2026, 2, 20, tzinfo=UTC).timestamp()
    mondays = list(
        itertools.islice(
            cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone), 6
        )
    )
    launched = []
    for monday in mondays:
        assert monday.astimezone(NEW_YORK).strftime("%a %H:%M") == "Mon 08:00"
        runs, skip = _evaluate(schedule, monday)
        if runs:
            launched.append(monday.astimezone(NEW_YORK))
        else:
            assert "off week" in skip
    assert len(launched) == 3
    assert all(b.date() - a.date() == timedelta(days=14) for a, b in itertools.pairwise(launched))
    # 8 March 2026 is the spring change; the UTC hour moves, the local hour does not.
    assert {m.astimezone(UTC).hour for m in mondays} == {12, 13}


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_a_biweekly_job_runs_in_exactly_one_of_any_two_consecutive_weeks(day):
    from batch_pipelines.configured_batches.groups import is_biweekly_week

    assert is_biweekly_week(day) != is_biweekly_week(day + timedelta(days=7))
    assert is_biweekly_week(day) == is_biweekly_week(day + timedelta(days=14))


@given(
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from(["hourly", "daily", "weekly", "biweekly", "monthly"]),
)
def test_the_cron_of_a_frequency_fires_at_its_time(hour, minute, frequency):
    day = {"weekly": "wednesday", "biweekly": "wednesday", "monthly": 14}.get(frequency)
    spec = ScheduleSpec(
        frequency=frequency, time=f"{hour:02d}:{minute:02d}", day=day, timezone="Asia/Kolkata"
    )
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    tick = next(cron_string_iterator(start, cron_for(spec), spec.timezone)).astimezone(
        ZoneInfo(spec.timezone)
    )
    assert tick.minute == minute
    if frequency != "hourly":
        assert tick.hour == hour
    if frequency in ("weekly", "biweekly"):
        assert tick.strftime("%A") == "Wednesday"
    if frequency == "monthly":
        assert tick.day == 14


@given(
    st.integers(-100, 100),
    st.floats(0, 1e6),
    st.floats(0, 1e6),
    st.floats(1, 3600),
    st.integers(1, 50),
)
def test_a_queued_run_never_loses_priority_by_waiting_longer(base, waited, more, after, step):
    first = promoted_priority(base, waited, after_seconds=after, step=step)
    later = promoted_priority(base, waited + more, after_seconds=after, step=step)
    assert base <= first <= later <= max(base, 1000)


def test_a_run_that_waited_long_enough_outranks_any_newcomer():
    assert promoted_priority(-100, 21 * 600, after_seconds=600, step=10) > 100
    assert promoted_priority(0, 599, after_seconds=600, step=10) == 0


def _queued(instance: dg.DagsterInstance, job_name: str, tags: dict[str, str]) -> str:
    """A run waiting in the queue (queued runs must say where their job comes from)."""
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=InProcessCodeLocationOrigin(
                loadable_target_origin=LoadableTargetOrigin(python_file="defs.py")
            ),
            repository_name="__repository__",
        ),
        job_name=job_name,
    )
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name=job_name,
            run_id=run_id,
            status=dg.DagsterRunStatus.QUEUED,
            tags=tags,
            remote_job_origin=origin,
        )
    )
    return run_id


def test_the_promotion_sensor_raises_the_priority_of_this_familys_queued_runs_only():
    with dg.instance_for_test() as instance:
        ours = _queued(
            instance, "configured_batch_job", {PRIORITY_TAG: "2", BASE_PRIORITY_TAG: "2"}
        )
        theirs = _queued(instance, "risk_modeling_cycle", {PRIORITY_TAG: "2"})
        resource = ConfiguredJobsResource(promotion_after_seconds=1e-6, promotion_step=1)
        context = dg.build_sensor_context(
            instance=instance, resources={"configured_jobs": resource}
        )
        result = configured_batches_queue_promotion(context)
        assert "promoted 1" in str(result.skip_message)
        tags = instance.get_run_by_id(ours).tags
        assert int(tags[PRIORITY_TAG]) == 1000 and tags[BASE_PRIORITY_TAG] == "2"
        assert instance.get_run_by_id(theirs).tags[PRIORITY_TAG] == "2"
        slow = ConfiguredJobsResource(promotion_after_seconds=3600, promotion_step=10)
        again = configured_batches_queue_promotion(
            dg.build_sensor_context(instance=instance, resources={"configured_jobs": slow})
        )
        assert "no queued run" in str(again.skip_message)


def test_a_queued_preference_run_first_gets_its_jobs_priority_from_the_job_file(tmp_path):
    path = job_file(
        tmp_path, lambda raw: raw["jobs"][5].update(priority=9)
    )  # personal_daily_digest
    with dg.instance_for_test() as instance:
        run_id = _queued(instance, "preference_batch_job", {FEATURE_TAG: "daily_digest"})
        resource = ConfiguredJobsResource(
            jobs_file=str(path), promotion_after_seconds=3600, promotion_step=10
        )
        configured_batches_queue_promotion(
            dg.build_sensor_context(instance=instance, resources={"configured_jobs": resource})
        )
        tags = instance.get_run_by_id(run_id).tags
        assert (tags[PRIORITY_TAG], tags[BASE_PRIORITY_TAG]) == ("9", "9")


def test_preference_jobs_get_no_static_schedule():
    jobs, _ = load_job_configuration(SAMPLE_JOBS_FILE)
    names = set(_schedules())
    assert all(f"{j.job_id}_schedule" not in names for j in jobs if j.type.is_preference)
