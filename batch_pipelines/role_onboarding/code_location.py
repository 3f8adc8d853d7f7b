"""This family alone as a code location, for the demo and the run-queue test.

Their daemon starts one run worker process per role, and each worker loads its code
location: this one imports only what role onboarding needs (about a second less per run
than the whole product's location), while the asset, job, sensor and resources are the
very ones ``batch_pipelines.definitions`` serves.
"""

import dagster as dg

from batch_pipelines.resources import BatchStoreResource, ModelsResource, env_or
from batch_pipelines.role_onboarding.definitions import role_onboarding_definitions


@dg.definitions
def defs() -> dg.Definitions:
    shared = dg.Definitions(
        resources={
            "batch_store": BatchStoreResource(
                database_url=env_or("BATCH_PIPELINES_DATABASE_URL", "")
            ),
            "models": ModelsResource(
                base_url=env_or("MODELS_BASE_URL", ""), api_key=env_or("MODELS_API_KEY")
            ),
        }
    )
    return dg.Definitions.merge(shared, role_onboarding_definitions())
