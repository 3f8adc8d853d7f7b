"""The role onboarding family's part of the code location."""

import dagster as dg

from batch_pipelines.role_onboarding.assets import role_onboarding, role_onboarding_job
from batch_pipelines.role_onboarding.jobs import (
    cleanup_expired_role_batches,
    retry_failed_roles,
    role_batch_cleanup_schedule,
    role_batch_status,
    submit_role_batch,
)
from batch_pipelines.role_onboarding.resources import default_settings
from batch_pipelines.role_onboarding.sensors import (
    role_batch_submissions,
    role_submissions_drop_sensor,
)


def role_onboarding_definitions() -> dg.Definitions:
    """Assets, jobs, sensors, schedules and family-only resources of this family.

    Shared resources (batch_store, models, teams, risk_modeler) come from the top-level
    definitions; resources added here must have names no other family uses.
    """
    return dg.Definitions(
        assets=[role_onboarding],
        jobs=[
            role_onboarding_job,
            submit_role_batch,
            retry_failed_roles,
            role_batch_status,
            cleanup_expired_role_batches,
        ],
        sensors=[role_batch_submissions, role_submissions_drop_sensor],
        schedules=[role_batch_cleanup_schedule],
        resources={"role_onboarding_settings": default_settings()},
    )
