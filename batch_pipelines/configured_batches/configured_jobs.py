"""The ``configured_jobs`` resource: where the job file is, how queued runs are promoted,
and the processing settings the seed makes configurable through the environment.

Runs read the job file through this resource (not through an environment lookup in the
asset), so the UI shows where it comes from (``CONFIGURED_JOBS_FILE`` or the shipped
sample) and a launch can point at another file.

| env var              | field                      | embedded default                 |
|----------------------|----------------------------|----------------------------------|
| CONFIGURED_JOBS_FILE | jobs_file                  | the shipped sample               |
| BATCH_CHUNK_SIZE     | chunk_size                 | none: a job's own, else 100      |
| CATEGORY_CACHE_TTL   | category_cache_ttl_seconds | 300                              |
"""

import os
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from batch_pipelines.configured_batches.job_config import (
    MAX_CHUNK_SIZE,
    SAMPLE_JOBS_FILE,
    JobConfig,
    JobProblem,
    load_job_configuration,
)
from batch_pipelines.configured_batches.repositories import CategoryRepository
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import env_or

CHUNK_SIZE_ENV = "BATCH_CHUNK_SIZE"
CATEGORY_CACHE_TTL_ENV = "CATEGORY_CACHE_TTL"
DEFAULT_CATEGORY_CACHE_TTL_SECONDS = 300


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
    chunk_size: int | None = Field(
        default=None,
        description=(
            f"Chunk size ({CHUNK_SIZE_ENV}) of jobs whose entry sets none: users per request of "
            "batch strategies, members per chunk of preference batches. A job's own chunk_size wins."
        ),
    )
    category_cache_ttl_seconds: int = Field(
        default=DEFAULT_CATEGORY_CACHE_TTL_SECONDS,
        description=f"Seconds a category read is served from cache ({CATEGORY_CACHE_TTL_ENV}).",
    )

    def path(self) -> Path:
        return Path(self.jobs_file) if self.jobs_file else SAMPLE_JOBS_FILE

    def load(self) -> tuple[list[JobConfig], list[JobProblem]]:
        return load_job_configuration(self.path())

    def with_settings(self, job: JobConfig) -> JobConfig:
        """``job`` with the environment's chunk size when its entry does not set one."""
        if self.chunk_size is None or "chunk_size" in job.model_fields_set:
            return job
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigurationError(
                f"{CHUNK_SIZE_ENV} must be between 1 and {MAX_CHUNK_SIZE}, got {self.chunk_size}"
            )
        return job.model_copy(update={"chunk_size": self.chunk_size})

    def category_repository(self, engine: sa.Engine) -> CategoryRepository:
        """Category items cached ``category_cache_ttl_seconds``, with durable snapshots (a
        later run falls back on what this one read)."""
        if self.category_cache_ttl_seconds < 0:
            raise ConfigurationError(
                f"{CATEGORY_CACHE_TTL_ENV} must not be negative, got {self.category_cache_ttl_seconds}"
            )
        return CategoryRepository(
            engine, ttl_seconds=self.category_cache_ttl_seconds, durable_snapshots=True
        )

    def job(self, job_id: str) -> JobConfig:
        """The valid job ``job_id`` (with the environment's settings); its problems in the
        error when it is invalid."""
        jobs, problems = self.load()
        for job in jobs:
            if job.job_id == job_id:
                return self.with_settings(job)
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
                return self.with_settings(job)
        raise ConfigurationError(
            f"no valid preference job for feature type {feature_type!r} in {self.path().name}",
            details={"feature_type": feature_type},
        )


def configured_jobs_resource(jobs_file: str | None = None) -> ConfiguredJobsResource:
    """The resource as the code location configures it: ``CONFIGURED_JOBS_FILE``,
    ``BATCH_CHUNK_SIZE`` and ``CATEGORY_CACHE_TTL`` as ``dg.EnvVar`` when set
    (``jobs_file`` overrides the first, for tests)."""
    return ConfiguredJobsResource(
        jobs_file=env_or("CONFIGURED_JOBS_FILE", "") if jobs_file is None else jobs_file,
        chunk_size=dg.EnvVar.int(CHUNK_SIZE_ENV) if os.environ.get(CHUNK_SIZE_ENV) else None,
        category_cache_ttl_seconds=(
            dg.EnvVar.int(CATEGORY_CACHE_TTL_ENV)
            if os.environ.get(CATEGORY_CACHE_TTL_ENV)
            else DEFAULT_CATEGORY_CACHE_TTL_SECONDS
        ),
    )
