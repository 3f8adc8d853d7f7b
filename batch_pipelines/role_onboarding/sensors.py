"""The submissions sensor: stored role workflows become runs.

Every submission path (the ``submit_role_batch`` job, the CLI, a retry) only writes the
store; this sensor reads the workflows stored since its cursor, adds their partitions and
requests one run per workflow with the workflow id as run key, so a workflow is never run
twice even if a tick is repeated. Throttling is not done here: the runs are queued and
Dagster's run queue starts at most the tag concurrency limit of role runs at once.
"""

import dagster as dg

from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.role_onboarding.assets import ROLES, role_onboarding_job
from batch_pipelines.role_onboarding.service import run_request
from batch_pipelines.role_onboarding.status import WorkflowRecord
from batch_pipelines.role_onboarding.store import RoleOnboardingStore

LAUNCHES_PER_TICK = 500


def parse_cursor(cursor: str | None) -> int:
    """The id of the last workflow launched; a cursor that is not a number starts over
    (run keys make relaunching harmless)."""
    try:
        return max(0, int(cursor)) if cursor else 0
    except ValueError:
        return 0


def plan_launches(workflows: list[WorkflowRecord], cursor: int) -> tuple[list[WorkflowRecord], list[str], int]:
    """Which workflows to launch, which partitions they need, and the next cursor."""
    todo = [wf for wf in workflows if wf.id > cursor]
    partitions = list(dict.fromkeys(wf.partition_key for wf in todo))
    return todo, partitions, max([cursor, *(wf.id for wf in todo)])


@dg.sensor(
    job=role_onboarding_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches one queued run per stored role workflow (run key = workflow id).",
)
def role_batch_submissions(
    context: dg.SensorEvaluationContext, batch_store: BatchStoreResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = parse_cursor(context.cursor)
    stored = RoleOnboardingStore(batch_store.get_store()).workflows_after(cursor, limit=LAUNCHES_PER_TICK)
    todo, partitions, next_cursor = plan_launches(stored, cursor)
    if not todo:
        return dg.SkipReason("no new role workflow")
    return dg.SensorResult(
        run_requests=[run_request(wf) for wf in todo],
        dynamic_partitions_requests=[ROLES.build_add_request(partitions)],
        cursor=str(next_cursor),
    )
