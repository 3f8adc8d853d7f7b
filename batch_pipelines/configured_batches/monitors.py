"""Sensors that watch the job file and the run queue rather than launch batches.

- ``configured_jobs_problems`` re-validates the job file on every tick and FAILS the tick
  with every problem (job id, field, message) while the file has any: an invalid job is
  then a failed tick on the Automation page (an orange triangle; the problems are in the
  tick's details), not a line in a log, and the code location keeps loading with the
  valid jobs.
- ``configured_batches_queue_promotion`` raises the ``dagster/priority`` tag of this
  family's queued runs as they wait (``schedules.promoted_priority``), so a low-priority
  run is never starved by a stream of higher-priority ones. Preference runs, launched by
  sensors that know only their group, first get their job's priority from the job file.
"""

from datetime import UTC, datetime

import dagster as dg

from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
from batch_pipelines.configured_batches.groups import FEATURE_TAG
from batch_pipelines.configured_batches.schedules import (
    BASE_PRIORITY_TAG,
    PRIORITY_TAG,
    promoted_priority,
)
from batch_pipelines.core.errors import ConfigurationError

PROMOTED_JOBS = ("configured_batch_job", "preference_batch_job")


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails while the configured jobs file has invalid jobs, listing each with its field.",
)
def configured_jobs_problems(
    context: dg.SensorEvaluationContext, configured_jobs: ConfiguredJobsResource
) -> dg.SkipReason:
    jobs, problems = configured_jobs.load()
    name = configured_jobs.path().name
    if problems:
        raise ConfigurationError(
            f"{len(problems)} problems in the job file {name} (invalid jobs are not scheduled; "
            "fix the file and reload the code location):\n" + "\n".join(f"- {p}" for p in problems),
            details={"problems": [p.to_dict() for p in problems]},
        )
    return dg.SkipReason(f"job file {name}: {len(jobs)} valid jobs, no problems")


def _as_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Promotes this family's queued runs by how long they have waited, so that none starves.",
)
def configured_batches_queue_promotion(
    context: dg.SensorEvaluationContext, configured_jobs: ConfiguredJobsResource
) -> dg.SkipReason:
    now = datetime.now(UTC)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])
    )
    jobs, _ = configured_jobs.load()
    # Preference runs are launched by sensors that know the group, not the job: their base
    # priority is the job file's priority of the group's feature type.
    feature_priority = {j.feature_type: j.priority for j in jobs if j.type.is_preference}
    promoted = []
    for record in records:
        run = record.dagster_run
        if run.job_name not in PROMOTED_JOBS:
            continue
        current = _as_int(run.tags.get(PRIORITY_TAG), 0)
        if BASE_PRIORITY_TAG in run.tags:
            base = _as_int(run.tags[BASE_PRIORITY_TAG], current)
        else:
            base = feature_priority.get(run.tags.get(FEATURE_TAG), current)
        created = record.create_timestamp
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        wanted = promoted_priority(
            base,
            (now - created).total_seconds(),
            after_seconds=configured_jobs.promotion_after_seconds,
            step=configured_jobs.promotion_step,
        )
        if wanted > current or BASE_PRIORITY_TAG not in run.tags:
            context.instance.add_run_tags(
                run.run_id, {PRIORITY_TAG: str(wanted), BASE_PRIORITY_TAG: str(base)}
            )
            promoted.append(f"{run.run_id[:8]} {current}->{wanted}")
    if not promoted:
        return dg.SkipReason("no queued run waited long enough to be promoted")
    return dg.SkipReason(f"promoted {len(promoted)} queued runs: " + ", ".join(promoted[:20]))
