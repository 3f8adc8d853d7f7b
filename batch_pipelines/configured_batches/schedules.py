"""Every static job of the job file becomes a Dagster schedule.

- Cron: ``cron_for`` turns a frequency, day and time into a cron string; the schedule runs
  it in the job's ``execution_timezone``, so 07:30 Europe/Paris stays 07:30 local across
  daylight-saving changes (Dagster's cron iteration is timezone-aware).
- Biweekly: cron cannot say "every other week", so a biweekly job's cron fires weekly and
  its schedule function skips (``dg.SkipReason``) the weeks whose number since a fixed
  Monday is odd (``groups.is_biweekly_week``, shared with preference groups so both agree
  on the weeks). Counting from one anchor, unlike ISO week parity, never runs two weeks in
  a row nor skips three at a year with 53 ISO weeks.
- Priority: each run carries the job's priority as the ``dagster/priority`` tag, so when
  ticks coincide the QueuedRunCoordinator launches higher priorities first.
- No starvation: the ``configured_batches_queue_promotion`` sensor raises the
  ``dagster/priority`` tag of runs of this family that have waited in the queue, by
  ``promotion_step`` for every ``promotion_after_seconds`` waited (``promoted_priority``);
  a run that has waited long enough outranks any newcomer, so every run is eventually
  dequeued.
"""

from datetime import datetime
from typing import Any

import dagster as dg

from batch_pipelines.configured_batches.groups import is_biweekly_week
from batch_pipelines.configured_batches.job_config import (
    WEEKDAYS,
    Frequency,
    JobConfig,
    ScheduleSpec,
)

PRIORITY_TAG = "dagster/priority"
JOB_TAG = "configured_batches/job_id"
TICK_TAG = "configured_batches/tick"
BASE_PRIORITY_TAG = "configured_batches/base_priority"
MAX_PRIORITY = 1000


def cron_for(schedule: ScheduleSpec) -> str:
    """The cron string of a schedule (biweekly: its weekly cron, see ``groups.is_biweekly_week``)."""
    if schedule.cron is not None:
        return schedule.cron
    hour, minute = (int(p) for p in schedule.time.split(":"))
    match schedule.frequency:
        case Frequency.HOURLY:
            return f"{minute} * * * *"
        case Frequency.DAILY:
            return f"{minute} {hour} * * *"
        case Frequency.WEEKLY | Frequency.BIWEEKLY:
            # cron weekdays: 0 is Sunday; WEEKDAYS starts on Monday.
            weekday = (WEEKDAYS.index(str(schedule.day).lower()) + 1) % 7
            return f"{minute} {hour} * * {weekday}"
        case Frequency.MONTHLY:
            return f"{minute} {hour} {schedule.day} * *"
    raise ValueError(
        f"schedule without frequency or cron: {schedule}"
    )  # pragma: no cover - validated


def schedule_name(job: JobConfig) -> str:
    return f"{job.job_id}_schedule"


def tick_of(scheduled: datetime) -> str:
    """A tick's identity, as an ISO timestamp in the schedule's timezone."""
    return scheduled.isoformat(timespec="minutes")


def run_request_for(job: JobConfig, scheduled: datetime) -> dg.RunRequest | dg.SkipReason:
    """What a tick of ``job``'s schedule at ``scheduled`` (aware, local) launches."""
    assert job.schedule is not None
    if job.schedule.frequency == Frequency.BIWEEKLY and not is_biweekly_week(scheduled.date()):
        return dg.SkipReason(f"{job.job_id} is biweekly: week of {scheduled.date()} is an off week")
    tick = tick_of(scheduled)
    return dg.RunRequest(
        run_key=f"{job.job_id}:{tick}",
        partition_key=job.job_id,
        run_config={"ops": {"configured_batch": {"config": {"tick": tick}}}},
        tags={
            PRIORITY_TAG: str(job.priority),
            BASE_PRIORITY_TAG: str(job.priority),
            JOB_TAG: job.job_id,
            TICK_TAG: tick,
        },
    )


def build_schedule(job: JobConfig, target: Any) -> dg.ScheduleDefinition:
    """The schedule of one static job, launching ``target`` (the configured batch job)."""
    assert job.schedule is not None
    spec = job.schedule

    def evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return run_request_for(job, context.scheduled_execution_time)

    what = spec.cron or f"{spec.frequency} at {spec.time}" + (f" on {spec.day}" if spec.day else "")
    return dg.ScheduleDefinition(
        name=schedule_name(job),
        cron_schedule=cron_for(spec),
        execution_timezone=spec.timezone,
        job=target,
        execution_fn=evaluate,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{job.job_id} ({job.type}): {what} {spec.timezone}, priority {job.priority}. {job.description}".strip(),
        metadata={
            "job_id": job.job_id,
            "priority": job.priority,
            "cron": cron_for(spec),
            "timezone": spec.timezone,
        },
    )


def build_schedules(jobs: list[JobConfig], target: Any) -> list[dg.ScheduleDefinition]:
    return [build_schedule(job, target) for job in jobs if job.schedule is not None]


def promoted_priority(
    base: int,
    waited_seconds: float,
    *,
    after_seconds: float,
    step: int,
    maximum: int = MAX_PRIORITY,
) -> int:
    """The priority of a run that has waited ``waited_seconds`` in the queue: ``base`` plus
    ``step`` for every full ``after_seconds``, at most ``maximum``."""
    if after_seconds <= 0 or step <= 0 or waited_seconds <= 0:
        return base
    return min(maximum, base + int(waited_seconds // after_seconds) * step)
