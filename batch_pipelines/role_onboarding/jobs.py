"""What people do from the UI: submit a batch of roles, retry its failed roles, and the
hourly cleanup of expired batch records.

Submitting adds the roles' partitions and stores the batch; the runs are launched by the
``role_batch_submissions`` sensor (run key = workflow id), so a submission run that is
retried or relaunched never starts a role twice.
"""

import dagster as dg
from pydantic import Field

from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.failures import final_failure
from batch_pipelines.metadata import metadata_table
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.role_onboarding.assets import ROLES
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
from batch_pipelines.role_onboarding.service import (
    batch_status,
    retry_failed,
    role_concurrency_of,
    submit_batch,
)
from batch_pipelines.role_onboarding.status import BATCH_TAG
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import RoleOptions, validate_submission


class RoleToOnboard(dg.Config):
    role_name: str = Field(description="The company's name of the role.")
    draup_role_name: str = Field(default="", description="Taxonomy role to map to.")
    draup_role_id: str = Field(default="", description="Alias of draup_role_name.")


class SubmitRoleBatchConfig(dg.Config):
    company_id: str = Field(
        description="The company whose roles are onboarded (letters, digits, spaces, - _ .; "
        "checked like every name that becomes a partition key)."
    )
    roles: list[RoleToOnboard] = Field(
        description="The roles; invalid ones are skipped with their reason."
    )
    skip_enhancement_workflows: bool = False
    force_rerun: bool = Field(default=False, description="Redo roles that are already ready.")
    created_by: str = Field(default="", description="Who submits (e-mail).")


@dg.op
def store_role_batch(
    context: dg.OpExecutionContext,
    config: SubmitRoleBatchConfig,
    batch_store: BatchStoreResource,
    role_onboarding_settings: RoleOnboardingSettings,
) -> str:
    settings = role_onboarding_settings
    roles = [
        {k: v for k, v in r.model_dump().items() if v != "" or k == "role_name"}
        for r in config.roles
    ]
    try:
        submission = validate_submission(
            config.company_id,
            roles,
            options=RoleOptions(config.skip_enhancement_workflows, config.force_rerun),
            created_by=config.created_by or None,
        )
        for invalid in submission.invalid:
            context.log.warning(f"skipped {invalid}")
        result = submit_batch(
            RoleOnboardingStore(batch_store.get_store()),
            submission,
            enabled=settings.submission_enabled(),
            ttl=settings.ttl(),
            role_seconds=settings.estimated_role_seconds,
            concurrency=role_concurrency_of(context.instance),
        )
    except BatchPipelinesError as exc:
        # Bad input or a closed gate: say so plainly; retrying the run cannot help.
        raise final_failure(exc) from None
    keys = [wf.partition_key for wf in result.batch.current_workflows()]
    context.instance.add_dynamic_partitions(ROLES.name, keys)
    context.instance.add_run_tags(context.run_id, {BATCH_TAG: result.batch.batch_id})
    context.log.info(result.response["message"])
    context.add_output_metadata(
        {
            "batch_id": result.batch.batch_id,
            "total_roles": result.response["total_roles"],
            "invalid_roles": len(submission.invalid),
            "estimated_duration_seconds": result.response["estimated_duration_seconds"],
            "response": dg.MetadataValue.json(result.response),
        }
    )
    return result.batch.batch_id


# Never retried as a whole run: a retry after the batch was stored would store a second one.
@dg.job(
    description="Submit a batch of roles for onboarding (seed 000's push-batch).",
    tags={"dagster/max_retries": "0"},
)
def submit_role_batch():
    store_role_batch()


class RetryFailedRolesConfig(dg.Config):
    batch_id: str = Field(description="batch-<12 hex digits>")
    workflow_ids: list[str] = Field(
        default_factory=list, description="Only these failed workflows (empty: all failed)."
    )
    force_rerun: bool = False


@dg.op
def retry_failed_role_workflows(
    context: dg.OpExecutionContext, config: RetryFailedRolesConfig, batch_store: BatchStoreResource
) -> dict:
    try:
        response = retry_failed(
            context.instance,
            RoleOnboardingStore(batch_store.get_store()),
            config.batch_id,
            workflow_ids=list(config.workflow_ids) or None,
            force_rerun=config.force_rerun,
        )
    except BatchPipelinesError as exc:
        raise final_failure(exc) from None
    context.instance.add_run_tags(context.run_id, {BATCH_TAG: response["batch_id"]})
    context.log.info(response["message"])
    context.add_output_metadata(
        {"retried_count": response["retried_count"], "response": dg.MetadataValue.json(response)}
    )
    return response


@dg.job(
    description="Retry the failed roles of a batch (or the given workflow ids); they join the same batch.",
    tags={"dagster/max_retries": "0"},
)
def retry_failed_roles():
    retry_failed_role_workflows()


class RoleBatchStatusConfig(dg.Config):
    batch_id: str = Field(description="batch-<12 hex digits>")


ROLE_TABLE_ROWS = 1000


@dg.op
def report_role_batch_status(
    context: dg.OpExecutionContext,
    config: RoleBatchStatusConfig,
    batch_store: BatchStoreResource,
    role_onboarding_settings: RoleOnboardingSettings,
) -> dict:
    """The batch's status as metadata of this run: counts, state and a table of roles."""
    try:
        status = batch_status(
            context.instance,
            RoleOnboardingStore(batch_store.get_store()),
            config.batch_id,
            dashboard_base_url=role_onboarding_settings.dashboard_base_url,
        )
    except BatchPipelinesError as exc:
        raise final_failure(exc) from None
    view = status.to_dict()
    columns = ["role_name", "status", "workflow_id", "attempt", "run_id", "dashboard_url", "error"]
    table = metadata_table(
        [(c, "string") for c in columns],
        ({c: str(r.get(c) or "") for c in columns} for r in view["roles"][:ROLE_TABLE_ROWS]),
    )
    context.instance.add_run_tags(context.run_id, {BATCH_TAG: status.batch_id})
    context.add_output_metadata(
        {
            **{
                k: view[k]
                for k in ("state", "total", "queued", "in_progress", "completed", "failed")
            },
            "progress_percent": view["progress_percent"],
            "success_rate": view["success_rate"],
            "cost": float(status.cost),
            "tokens": view["tokens"],
            "created_at": view["created_at"],
            "roles": table,
        }
    )
    return {k: v for k, v in view.items() if k != "roles"}


@dg.job(
    description="Show a role batch's status (counts, state, per-role status) as this run's metadata."
)
def role_batch_status():
    report_role_batch_status()


@dg.op
def delete_expired_role_batches(
    context: dg.OpExecutionContext, batch_store: BatchStoreResource
) -> list:
    gone = RoleOnboardingStore(batch_store.get_store()).delete_expired()
    context.log.info(f"deleted {len(gone)} expired role batch records")
    context.add_output_metadata({"deleted": len(gone)})
    return gone


@dg.job(
    description="Delete role batch records past their time to live (reads also delete them lazily)."
)
def cleanup_expired_role_batches():
    delete_expired_role_batches()


role_batch_cleanup_schedule = dg.ScheduleDefinition(
    job=cleanup_expired_role_batches,
    cron_schedule="17 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: expired role batch records are deleted.",
)
