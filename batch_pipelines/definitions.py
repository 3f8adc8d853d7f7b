"""The one Definitions object of the batch_pipelines code location."""

import os
import warnings

import dagster as dg

from batch_pipelines.batch_actions.jobs import batch_control, resubmit_jobs
from batch_pipelines.configured_batches.definitions import configured_batches_definitions
from batch_pipelines.document_ai.definitions import document_ai_definitions
from batch_pipelines.drop_folders import create_drop_folders
from batch_pipelines.instance import DEFAULT_UI_URL, UI_URL_ENV
from batch_pipelines.resources import check_production_settings, default_resources, env_or
from batch_pipelines.risk_modeling.assets import risk_modeling_assets, risk_modeling_cycle_job
from batch_pipelines.risk_modeling.jobs import analysis_decisions, load_workbook
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sensors import (
    cycle_after_workbook_load,
    failed_batch_notifications,
    workbook_drop_sensor,
)
from batch_pipelines.role_onboarding.definitions import role_onboarding_definitions


def _quiet_dagster_owners_warning() -> None:
    """Dagster 1.13 re-creates a sensor with ``owners=[]`` when it binds resources to the
    sensor's jobs, and then warns that ``owners`` is in beta: a warning on every newcomer's
    first screen about a parameter this project never uses. Only that message is hidden."""
    warnings.filterwarnings(
        "ignore",
        message=r"Parameter `owners` of initializer `SensorDefinition",
        category=dg.BetaWarning,
    )


@dg.definitions
def defs() -> dg.Definitions:
    check_production_settings(os.environ)
    _quiet_dagster_owners_warning()
    shared_and_risk_modeling = dg.Definitions(
        assets=risk_modeling_assets,
        jobs=[
            batch_control,
            resubmit_jobs,
            risk_modeling_cycle_job,
            load_workbook,
            analysis_decisions,
        ],
        sensors=[workbook_drop_sensor, cycle_after_workbook_load, failed_batch_notifications],
        resources={
            **default_resources(),
            "risk_modeling": RiskModelingSettings(
                source_database_url=env_or("RISK_MODELING_SOURCE_DATABASE_URL", ""),
                databridge_url=env_or("RISK_MODELING_DATABRIDGE_URL", ""),
                dagster_url=env_or(UI_URL_ENV, DEFAULT_UI_URL),
            ),
        },
    )
    merged = dg.Definitions.merge(
        shared_and_risk_modeling,
        document_ai_definitions(),
        configured_batches_definitions(),
        role_onboarding_definitions(),
    )
    create_drop_folders(merged.resources or {})
    return merged
