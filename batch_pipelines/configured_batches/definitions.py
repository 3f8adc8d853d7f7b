"""The configured batches family's part of the code location.

The job file is read here, when the code location loads: its static jobs become the
partitions of ``configured_batch`` and one schedule each. Invalid jobs are left out and
listed in the asset's description and by the failing ``configured_jobs_problems`` sensor;
the rest of the code location loads normally.
"""

import os

import dagster as dg

from batch_pipelines.configured_batches.assets import (
    build_configured_batch_asset,
    build_configured_batch_job,
    preference_batch,
    preference_batch_job,
)
from batch_pipelines.configured_batches.configured_jobs import (
    ConfiguredJobsResource,
    configured_jobs_resource,
)
from batch_pipelines.configured_batches.job_config import JobProblem
from batch_pipelines.configured_batches.monitors import (
    configured_batches_queue_promotion,
    configured_jobs_problems,
)
from batch_pipelines.configured_batches.resources import config_service_resource
from batch_pipelines.configured_batches.schedules import build_schedules
from batch_pipelines.configured_batches.sensors import PREFERENCE_SENSORS


def problems_note(problems: list[JobProblem]) -> str:
    if not problems:
        return ""
    lines = "\n".join(f"- {p}" for p in problems[:50])
    return f"**{len(problems)} problems in the job file** (these jobs are not scheduled):\n{lines}"


def configured_batches_definitions(jobs_file: str | None = None) -> dg.Definitions:
    """Assets, jobs, sensors, schedules and family-only resources of this family.

    Shared resources (batch_store, models, teams, risk_modeler) come from the top-level
    definitions; resources added here must have names no other family uses.
    ``jobs_file`` overrides ``CONFIGURED_JOBS_FILE`` (tests).
    """
    resource = configured_jobs_resource(jobs_file)
    if jobs_file is None:
        # The resource resolves its dg.EnvVar at run time; the schedules need the file now.
        jobs_file = os.environ.get("CONFIGURED_JOBS_FILE", "")
    jobs, problems = ConfiguredJobsResource(jobs_file=jobs_file).load()
    static_jobs = [j for j in jobs if not j.type.is_preference]
    configured_batch = build_configured_batch_asset(static_jobs, problems_note(problems))
    configured_batch_job = build_configured_batch_job(configured_batch)
    return dg.Definitions(
        assets=[configured_batch, preference_batch],
        jobs=[configured_batch_job, preference_batch_job],
        schedules=build_schedules(static_jobs, configured_batch_job),
        sensors=[*PREFERENCE_SENSORS, configured_jobs_problems, configured_batches_queue_promotion],
        resources={"configured_jobs": resource, "config_service": config_service_resource()},
    )
