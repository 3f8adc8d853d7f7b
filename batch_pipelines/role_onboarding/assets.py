"""The ``role_onboarding`` asset: one partition per company role, one run per role.

Each role is independent (seed 000), so a role is a partition of its own and its run is
the workflow: the run's status is the role's status, its failure names the step and the
reason, and Dagster's retry policy repeats a step that failed for a transient reason (a
5xx or timeout of the model service). A role already published is not redone unless
``force_rerun``. Materialization metadata: the standard batch metadata (the role is the
run's one unit, skipped when already ready; ``metadata.standard_metadata``) with the
dashboard_url link, and the steps beside it; the standard checks. Each model call is
written to the cost ledger under the role batch's shared ``batches`` row as it answers, and
the run records its id on the batch's workflow when it starts.
"""

import asyncio
import time
from typing import Any

import dagster as dg
from pydantic import Field

from batch_pipelines.core.costs import summarize
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.failures import NO_RUN_RETRY_ON_STEP_FAILURE
from batch_pipelines.metadata import (
    BatchOutcome,
    standard_check_results,
    standard_check_specs,
    standard_metadata,
)
from batch_pipelines.resources import BatchStoreResource, ModelsResource
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
from batch_pipelines.role_onboarding.service import ASSET_NAME
from batch_pipelines.role_onboarding.status import (
    ACTIVITY_POOL,
    CONCURRENCY_GROUP,
    CONCURRENCY_TAG_KEY,
    dashboard_url,
)
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import split_partition_key
from batch_pipelines.role_onboarding.workflow import (
    RoleInput,
    StepFailed,
    WorkflowResult,
    run_role_workflow,
)

GROUP = "role_onboarding"
ROLES = dg.DynamicPartitionsDefinition(name="role")
CONCURRENCY_TAGS = {CONCURRENCY_TAG_KEY: CONCURRENCY_GROUP}
# A transient failure is tried three times in all, 0.5 s then 1 s apart, inside the same run.
# Short, because it is the second line: the model client has already retried each call
# with its own backoff and the service's Retry-After.
STEP_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=0.5, backoff=dg.Backoff.EXPONENTIAL)


def role_outcome(
    *,
    batch_id: str,
    dashboard_url: str,
    duration_seconds: float,
    result: WorkflowResult | None = None,
) -> BatchOutcome:
    """The role's run in the shared vocabulary: the role is its one unit, succeeded when its
    workflow published it, skipped (``result`` None) when it was already ready. A role that
    fails raises instead, so a materialized role has COMPLETED."""
    totals = summarize(result.costs) if result is not None and result.costs else None
    return BatchOutcome(
        units_total=1,
        units_succeeded=1 if result is not None else 0,
        units_failed=0,
        units_skipped=0 if result is not None else 1,
        cost=totals.total_cost if totals else 0.0,
        tokens=totals.total_tokens if totals else 0,
        duration_seconds=duration_seconds,
        batch_id=batch_id,
        batch_status=BatchStatus.COMPLETED.value,
        reason="" if result is not None else "already ready (force_rerun is false)",
        links={"dashboard_url": dashboard_url},
    )


class RoleOnboardingConfig(dg.Config):
    """What a batch's run passes; a role onboarded before can be rerun from the UI with
    the defaults (its name is then read from its dashboard record)."""

    role_name: str = Field(default="", description="The company's name of the role.")
    draup_role_name: str = Field(
        default="", description="Taxonomy role to map to (draup_role_id is its alias)."
    )
    skip_enhancement_workflows: bool = False
    force_rerun: bool = Field(default=False, description="Redo a role that is already ready.")
    workflow_id: str = Field(
        default="", description="The batch workflow this run is (empty: not from a batch)."
    )
    attempt: int = Field(
        default=1, description="1 for the submission, 2+ for retries of failed roles."
    )


def _role_input(
    config: RoleOnboardingConfig, partition: str, store: RoleOnboardingStore
) -> RoleInput:
    role_name = config.role_name
    draup = config.draup_role_name or None
    if not role_name:
        known = store.get_dashboard(partition)
        if known is None:
            raise StepFailed(
                "validate_input",
                f"role_name is not configured and partition {partition!r} was never onboarded",
                transient=False,
            )
        role_name, draup = known.role_name, draup or known.taxonomy_role_name
    return RoleInput(
        partition_key=partition,
        role_name=role_name,
        draup_role_name=draup,
        skip_enhancement_workflows=config.skip_enhancement_workflows,
    )


@dg.asset(
    name=ASSET_NAME,
    partitions_def=ROLES,
    group_name=GROUP,
    kinds={"python"},
    retry_policy=STEP_RETRY_POLICY,
    # The seed's activity limit: at most the pool's limit of roles work (call the model
    # service) at once, however many role runs the run queue let start.
    pool=ACTIVITY_POOL,
    check_specs=standard_check_specs(ASSET_NAME),
    description="One company role onboarded: taxonomy role, documents, AI assessment, enhancement "
    "workflows and its published dashboard record.",
)
def role_onboarding(
    context: dg.AssetExecutionContext,
    config: RoleOnboardingConfig,
    batch_store: BatchStoreResource,
    models: ModelsResource,
    role_onboarding_settings: RoleOnboardingSettings,
) -> dg.MaterializeResult:
    settings = role_onboarding_settings
    store = RoleOnboardingStore(batch_store.get_store())
    partition = context.partition_key
    workflow = config.workflow_id or None
    started = time.monotonic()
    ledger_batch_id = None
    role_batch_id = ""
    if workflow:
        # The batch record lists its roles' run ids: this run is the workflow's.
        stored = store.record_run(workflow, context.run_id)
        if stored is not None:
            role_batch_id = stored.batch_id
            ledger_batch_id = store.ledger_batch_id(stored.batch_id)

    def on_step(step: str) -> None:
        context.log.info(f"{partition}: {step}")
        if workflow:
            store.record_step(workflow, step)

    try:
        role = _role_input(config, partition, store)
        existing = store.get_dashboard(partition)
        if existing is not None and not config.force_rerun:
            if workflow:
                store.record_step(workflow, "already_ready")
            url = dashboard_url(existing.dashboard_id, settings.dashboard_base_url)
            context.log.info(
                f"{partition} is already ready at {url}; not redone (force_rerun is false)"
            )
            outcome = role_outcome(
                batch_id=role_batch_id,
                dashboard_url=url,
                duration_seconds=time.monotonic() - started,
            )
            return dg.MaterializeResult(
                metadata={
                    **standard_metadata(outcome),
                    "steps": dg.MetadataValue.json([]),
                    "already_ready": True,
                    "workflow_id": workflow or "",
                },
                check_results=standard_check_results(outcome, partition),
            )
        company, _ = split_partition_key(partition)

        def publish(result: WorkflowResult) -> Any:
            assert result.taxonomy is not None
            return store.publish_dashboard(
                partition_key=partition,
                company_id=company,
                role_name=role.role_name,
                taxonomy_role_id=result.taxonomy.taxonomy_role_id,
                taxonomy_role_name=result.taxonomy.name,
                record={
                    "assessment": result.assessment,
                    "enhancements": result.enhancements,
                    "documents": [d["kind"] for d in result.documents],
                },
                workflow=workflow,
            )

        async def run() -> WorkflowResult:
            client = settings.model_client(models, partition, config.attempt)
            async with client:
                return await run_role_workflow(
                    role,
                    client=client,
                    model=settings.assessment_model,
                    publish=publish,
                    # The same for every try of this attempt: a retried step's calls are
                    # replayed and billed once (the ledger ignores a call key it has).
                    run_ref=f"role_onboarding:{workflow or context.run_id}",
                    on_step=on_step,
                    on_cost=lambda entry: batch_store.get_store().record_cost_entries([entry]),
                    ledger_batch_id=ledger_batch_id,
                )

        result = asyncio.run(run())
    except StepFailed as exc:
        if workflow:
            store.record_step(workflow, exc.step, error=exc.message)
        raise dg.Failure(
            description=f"{partition} failed at {exc.step}: {exc.reason}",
            metadata={"step": exc.step, "transient": exc.transient, "workflow_id": workflow or ""},
            allow_retries=exc.transient,
        ) from None

    if workflow:
        store.record_step(workflow, "published")
    url = dashboard_url(result.published.dashboard_id, settings.dashboard_base_url)
    outcome = role_outcome(
        batch_id=role_batch_id,
        dashboard_url=url,
        duration_seconds=time.monotonic() - started,
        result=result,
    )
    return dg.MaterializeResult(
        metadata={
            **standard_metadata(outcome),
            "steps": dg.MetadataValue.json(result.steps),
            "taxonomy_role_id": result.taxonomy.taxonomy_role_id if result.taxonomy else "",
            "model_calls": len(result.costs),
            "workflow_id": workflow or "",
            "attempt": config.attempt,
        },
        check_results=standard_check_results(outcome, partition),
    )


role_onboarding_job = dg.define_asset_job(
    "role_onboarding_job",
    selection=[role_onboarding],
    partitions_def=ROLES,
    # One role per run and one step per role: no per-step subprocess to start.
    executor_def=dg.in_process_executor,
    tags={**CONCURRENCY_TAGS, **NO_RUN_RETRY_ON_STEP_FAILURE},
    description="Onboard one role (one partition); batches launch one run per role.",
)
