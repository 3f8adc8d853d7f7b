"""The ``configured_jobs`` resource: where the job file is and how queued runs are promoted.

Runs read the job file through this resource (not through an environment lookup in the
asset), so the UI shows where it comes from (``CONFIGURED_JOBS_FILE`` or the shipped
sample) and a launch can point at another file.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from batch_pipelines.configured_batches.job_config import (
    SAMPLE_JOBS_FILE,
    JobConfig,
    JobProblem,
    load_job_configuration,
)
from batch_pipelines.core.errors import ConfigurationError


class ConfiguredJobsResource(dg.ConfigurableResource):
    """The job file of configured batches, and the queue promotion that prevents starvation."""

    jobs_file: str = Field(
        default="", description="Path of the JSON job file; empty: the shipped sample."
    )
    promotion_after_seconds: float = Field(
        default=600.0,
        description="A queued run gains promotion_step priority for every this many seconds it waits.",
    )
    promotion_step: int = Field(
        default=10, description="Priority gained per promotion_after_seconds waited."
    )

    def path(self) -> Path:
        return Path(self.jobs_file) if self.jobs_file else SAMPLE_JOBS_FILE

    def load(self) -> tuple[list[JobConfig], list[JobProblem]]:
        return load_job_configuration(self.path())

    def job(self, job_id: str) -> JobConfig:
        """The valid job ``job_id``; its problems in the error when it is invalid."""
        jobs, problems = self.load()
        for job in jobs:
            if job.job_id == job_id:
                return job
        own = [str(p) for p in problems if p.job == job_id] or [
            str(p) for p in problems if p.job is None
        ]
        raise ConfigurationError(
            f"job {job_id!r} is not a valid job of {self.path().name}"
            + (": " + "; ".join(own) if own else ""),
            details={"job_id": job_id},
        )

    def preference_job(self, feature_type: str) -> JobConfig:
        """The preference job of ``feature_type`` (the job file allows one per feature type)."""
        jobs, _ = self.load()
        for job in jobs:
            if job.type.is_preference and job.feature_type == feature_type:
                return job
        raise ConfigurationError(
            f"no valid preference job for feature type {feature_type!r} in {self.path().name}",
            details={"feature_type": feature_type},
        )
