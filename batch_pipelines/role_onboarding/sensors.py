"""The sensors of role onboarding: stored role workflows become runs, and submission files
dropped in a folder become batches.

Every submission path (the ``submit_role_batch`` job, the CLI, a retry) only writes the
store; this sensor reads the workflows stored since its cursor, adds their partitions and
requests one run per workflow with the workflow id as run key, so a workflow is never run
twice even if a tick is repeated. Throttling is not done here: the runs are queued and
Dagster's run queue starts at most the tag concurrency limit of role runs at once.

``role_submissions_drop_sensor`` is the third way to submit (after the UI job and the
CLI): each new or changed ``*.json`` file of the drop folder (seed 000's push-batch body)
launches the ``submit_role_batch`` job with the file's content as its run config, run key =
file name, mtime and size. The job validates the roles (invalid ones are skipped with
their reason, a submission without any valid role is a failed run tagged with its file). A
file the run config cannot carry (not JSON, not an object, a field of the wrong type) fails
the sensor's tick naming the file and the field; it stays out of the cursor, so the tick
keeps failing until the file is fixed or removed, while other files still launch.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.drop_folders import scan
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.role_onboarding.assets import ROLES, role_onboarding_job
from batch_pipelines.role_onboarding.jobs import submit_role_batch
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
from batch_pipelines.role_onboarding.service import (
    apply_activity_limit,
    check_workflow_limit_of,
    run_request,
)
from batch_pipelines.role_onboarding.status import WorkflowRecord
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import (
    ROLE_FIELDS,
    parse_options,
    read_json_file,
    validate_company_id,
)

LAUNCHES_PER_TICK = 500


def parse_cursor(cursor: str | None) -> int:
    """The id of the last workflow launched; a cursor that is not a number starts over
    (run keys make relaunching harmless)."""
    try:
        return max(0, int(cursor)) if cursor else 0
    except ValueError:
        return 0


def plan_launches(
    workflows: list[WorkflowRecord], cursor: int
) -> tuple[list[WorkflowRecord], list[str], int]:
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
    context: dg.SensorEvaluationContext,
    batch_store: BatchStoreResource,
    role_onboarding_settings: RoleOnboardingSettings,
) -> dg.SensorResult | dg.SkipReason:
    settings = role_onboarding_settings
    # Role runs are limited by the run queue (dagster.yaml); the variable must agree with it.
    check_workflow_limit_of(context.instance, settings.max_concurrent_workflows or None)
    # The activity pool's limit comes from ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES; pool
    # limits live in the instance, so every tick makes sure it has this one.
    changed = apply_activity_limit(context.instance, settings.max_concurrent_activities)
    if changed is not None:
        context.log.info(f"role_onboarding_activities pool limit set to {changed}")
    cursor = parse_cursor(context.cursor)
    stored = RoleOnboardingStore(batch_store.get_store()).workflows_after(
        cursor, limit=LAUNCHES_PER_TICK
    )
    todo, partitions, next_cursor = plan_launches(stored, cursor)
    if not todo:
        return dg.SkipReason("no new role workflow")
    return dg.SensorResult(
        run_requests=[run_request(wf) for wf in todo],
        dynamic_partitions_requests=[ROLES.build_add_request(partitions)],
        cursor=str(next_cursor),
    )


SUBMISSION_FIELDS = ("company_id", "roles", "options", "created_by")
SUBMISSION_FILE_TAG = "batch_pipelines/role_submission_file"


def submission_run_config(body: Any) -> dict[str, Any]:
    """The ``store_role_batch`` config of a push-batch body. Raises ConfigurationError naming
    the field when the body cannot be carried by the job's typed config; what can (a role
    without a usable name, an unknown company) is judged by the job itself."""
    if not isinstance(body, dict):
        raise ConfigurationError(f"expected an object with {', '.join(SUBMISSION_FIELDS)}")
    unknown = sorted(set(body) - set(SUBMISSION_FIELDS))
    if unknown:
        raise ConfigurationError(f"{unknown[0]}: unknown field; known: {list(SUBMISSION_FIELDS)}")
    # The company becomes partition keys: a name the job would refuse fails the tick here,
    # naming the file and field, instead of launching a run bound to fail.
    company_id = validate_company_id(body.get("company_id"))
    created_by = body.get("created_by")
    if created_by is not None and not isinstance(created_by, str):
        raise ConfigurationError("created_by: must be a string")
    options = parse_options(body.get("options"))
    raw_roles = body.get("roles")
    if not isinstance(raw_roles, list):
        raise ConfigurationError("roles: must be a list of {role_name, draup_role_name?} objects")
    roles = []
    for index, raw in enumerate(raw_roles):
        if not isinstance(raw, dict):
            raise ConfigurationError(f"roles[{index}]: must be an object with role_name")
        for name, value in raw.items():
            if name not in ROLE_FIELDS:
                raise ConfigurationError(
                    f"roles[{index}].{name}: unknown field; known: {list(ROLE_FIELDS)}"
                )
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"roles[{index}].{name}: must be a string")
        # A missing role_name is carried as "" and skipped by the job as "is required".
        roles.append(
            {
                "role_name": raw.get("role_name") or "",
                **{k: v for k, v in raw.items() if v is not None},
            }
        )
    return {
        "company_id": company_id,
        "roles": roles,
        "skip_enhancement_workflows": options.skip_enhancement_workflows,
        "force_rerun": options.force_rerun,
        "created_by": created_by or "",
    }


def read_submission_file(path: Path) -> dict[str, Any]:
    """The run config of a dropped file; ConfigurationError naming the file (and field)."""
    body = read_json_file(path, path.name)
    try:
        return submission_run_config(body)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path.name}: {exc.message}") from None


@dg.sensor(
    job=submit_role_batch,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Submits a role batch for each new or changed *.json push-batch body in the drop folder.",
)
def role_submissions_drop_sensor(
    context: dg.SensorEvaluationContext, role_onboarding_settings: RoleOnboardingSettings
) -> dg.SensorResult | dg.SkipReason:
    found = scan(
        Path(role_onboarding_settings.drop_folder), "*.json", context.cursor, what="submission file"
    )
    if found.nothing_to_do:
        return dg.SkipReason(found.nothing_to_do)
    changed, current = found.changed, found.current
    requests, problems = [], {}
    for raw in changed:
        path = Path(raw)
        try:
            config = read_submission_file(path)
        except ConfigurationError as exc:
            problems[raw] = exc.message
            continue
        mtime, size = current[raw]
        requests.append(
            dg.RunRequest(
                run_key=f"{path.name}:{mtime}:{size}",
                run_config={"ops": {"store_role_batch": {"config": config}}},
                tags={SUBMISSION_FILE_TAG: path.name},
            )
        )
    listing = "\n".join(f"- {problem}" for problem in problems.values())
    if problems and not requests:
        raise ConfigurationError(
            f"{len(problems)} invalid submission file(s), fix or remove them:\n{listing}"
        )
    if problems:
        context.log.error(f"invalid submission file(s), the next tick fails on them:\n{listing}")
    # Invalid files stay out of the cursor: seen again next tick, which then fails on them.
    return dg.SensorResult(run_requests=requests, cursor=found.cursor_without(problems))
