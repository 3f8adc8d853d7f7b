"""Settings of the role onboarding family, as a Dagster resource (``role_onboarding_settings``).

| env var                                          | field                              | default |
|--------------------------------------------------|------------------------------------|---------|
| ROLE_ONBOARDING_BATCH_SUBMISSION_ENABLED         | batch_submission_enabled (flag)    | true    |
| ROLE_ONBOARDING_BATCH_TTL_SECONDS                | batch_ttl_seconds                  | 86400   |
| ROLE_ONBOARDING_DASHBOARD_BASE_URL               | dashboard_base_url                 | ""      |
| ROLE_ONBOARDING_ASSESSMENT_MODEL                 | assessment_model                   | sim-large |
| ROLE_ONBOARDING_SIMULATED_ASSESSMENT_FAILURES    | simulated_assessment_failures      | ""      |
| ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS       | simulated_model_latency_ms         | 0       |
| ROLE_ONBOARDING_DROP_FOLDER                      | drop_folder                        | .data/role_onboarding/incoming |
| ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES        | max_concurrent_activities          | 5       |
| ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS         | max_concurrent_workflows (check)   | unset   |

The two ``simulated_*`` settings only act on the embedded model simulator (no
MODELS_BASE_URL): they let the demo and tests make chosen roles' AI assessment fail at the
model service on their first attempt, and make a model call take as long as they say.
``drop_folder`` is where the ``role_submissions_drop_sensor`` picks up submission files.
``max_concurrent_activities`` is the limit of the ``role_onboarding_activities`` pool (roles
working at once), which the ``role_batch_submissions`` sensor gives the instance.
``max_concurrent_workflows`` (0: unset) is not applied but checked: role runs are limited by
the run queue of dagster.yaml, which reads no environment variable, so the sensor refuses
to launch while the two disagree.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.flags import parse_flag
from batch_pipelines.resources import DATA_DIR, ModelsResource, env_or
from batch_pipelines.role_onboarding.status import DEFAULT_MAX_CONCURRENT_ACTIVITIES
from batch_pipelines.role_onboarding.submission import (
    DASHBOARD_BASE_URL_ENV,
    SUBMISSION_FLAG_ENV,
    TTL_ENV,
    split_partition_key,
)


class RoleOnboardingSettings(dg.ConfigurableResource):
    """Feature flag, batch TTL, dashboard links and the embedded simulator's fault rule."""

    batch_submission_enabled: str = Field(
        default="true", description="Feature flag: false refuses new batches."
    )
    batch_ttl_seconds: int = Field(default=86400, description="How long a batch record is kept.")
    dashboard_base_url: str = Field(
        default="", description="Prefix of /dashboard/roles/{id} links."
    )
    assessment_model: str = "sim-large"
    estimated_role_seconds: int = Field(
        default=900, description="Per-role estimate before any role finished."
    )
    model_timeout_seconds: float = 120.0
    simulated_assessment_failures: str = Field(
        default="",
        description="Comma-separated role slugs or partition keys whose AI assessment fails at the "
        "embedded model simulator on their first attempt (demo and tests only).",
    )
    simulated_model_latency_ms: int = 0
    max_concurrent_workflows: int = Field(
        default=0,
        description="Expected run queue limit on role runs (dagster.yaml); 0: not checked.",
    )
    max_concurrent_activities: int = Field(
        default=DEFAULT_MAX_CONCURRENT_ACTIVITIES,
        description="Roles whose step (AI assessment) runs at once: the activity pool's limit.",
    )
    drop_folder: str = Field(
        default=str(DATA_DIR / "role_onboarding" / "incoming"),
        description="Folder whose *.json files (push-batch bodies) are submitted as batches.",
    )

    def submission_enabled(self) -> bool:
        return parse_flag(self.batch_submission_enabled, name=SUBMISSION_FLAG_ENV, default=True)

    def ttl(self) -> timedelta:
        if self.batch_ttl_seconds <= 0:
            raise ConfigurationError(
                f"role_onboarding_settings.batch_ttl_seconds ({TTL_ENV}) must be a positive number of "
                f"seconds, got {self.batch_ttl_seconds}"
            )
        return timedelta(seconds=self.batch_ttl_seconds)

    def fails_first_assessment(self, partition_key: str) -> bool:
        wanted = {w.strip() for w in self.simulated_assessment_failures.split(",") if w.strip()}
        _, slug = split_partition_key(partition_key)
        return partition_key in wanted or slug in wanted

    def model_client(self, models: ModelsResource, partition_key: str, attempt: int) -> ModelClient:
        """The configured model service, or the embedded simulator with this role's faults."""
        if models.base_url:
            return models.client()
        from batch_pipelines.simulators.embedded import model_client
        from batch_pipelines.simulators.faults import FaultPlan
        from batch_pipelines.simulators.models import ModelSimulator

        failing = attempt <= 1 and self.fails_first_assessment(partition_key)
        faults = FaultPlan(
            latency_seconds=self.simulated_model_latency_ms / 1000.0,
            server_error_rate=1.0 if failing else 0.0,
        )
        return model_client(
            ModelSimulator(faults=faults),
            timeout_seconds=self.model_timeout_seconds,
            retry=RetryPolicy(max_retries=1, backoff_base_seconds=0.05, backoff_max_seconds=0.2),
        )


DROP_FOLDER_ENV = "ROLE_ONBOARDING_DROP_FOLDER"
MAX_CONCURRENT_ACTIVITIES_ENV = "ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES"
MAX_CONCURRENT_WORKFLOWS_ENV = "ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS"


def _int_env(name: str, default: int):
    import os

    return dg.EnvVar.int(name) if os.environ.get(name) else default


def default_settings() -> RoleOnboardingSettings:
    return RoleOnboardingSettings(
        batch_submission_enabled=env_or(SUBMISSION_FLAG_ENV, "true"),
        batch_ttl_seconds=_int_env(TTL_ENV, 86400),
        dashboard_base_url=env_or(DASHBOARD_BASE_URL_ENV, ""),
        assessment_model=env_or("ROLE_ONBOARDING_ASSESSMENT_MODEL", "sim-large"),
        simulated_assessment_failures=env_or("ROLE_ONBOARDING_SIMULATED_ASSESSMENT_FAILURES", ""),
        simulated_model_latency_ms=_int_env("ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS", 0),
        drop_folder=env_or(DROP_FOLDER_ENV, str(DATA_DIR / "role_onboarding" / "incoming")),
        max_concurrent_workflows=_int_env(MAX_CONCURRENT_WORKFLOWS_ENV, 0),
        max_concurrent_activities=_int_env(
            MAX_CONCURRENT_ACTIVITIES_ENV, DEFAULT_MAX_CONCURRENT_ACTIVITIES
        ),
    )
