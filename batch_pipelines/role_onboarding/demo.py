"""The role onboarding part of `make demo`: a 20-role batch through Dagster's real run queue.

Four roles' AI assessment fails at the (simulated) model service on their first attempt,
so the batch goes pending -> in_progress -> partial; retrying its failed roles brings it to
completed. A daemon launches the runs from the submissions sensor and the run queue keeps
at most the configured number of role runs executing at once; the demo samples that
number while it goes and checks it again from the run records afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from batch_pipelines.metadata import STANDARD_CHECKS, checks_line
from batch_pipelines.role_onboarding.queue_harness import (
    CODE_LOCATION_MODULE,
    QueueTimeout,
    project_dagster_yaml,
    run_batch_through_queue,
)
from batch_pipelines.role_onboarding.service import ASSET_NAME
from batch_pipelines.role_onboarding.status import DEFAULT_MAX_CONCURRENT_ACTIVITIES, money
from batch_pipelines.role_onboarding.submission import slugify, validate_submission

COMPANY = "liberty-mutual"
ROLE_NAMES = [
    "Claims Adjuster", "Underwriter", "Risk Analyst", "Actuary", "Data Analyst",
    "ML Engineer", "Customer Service Representative", "Insurance Agent", "Loss Control Specialist",
    "Fraud Investigator", "Product Manager", "Software Engineer", "Compliance Officer",
    "Financial Analyst", "Reinsurance Specialist", "Marketing Manager", "HR Business Partner",
    "Catastrophe Modeler", "Policy Administrator", "Billing Specialist",
]  # fmt: skip
FAILING_ROLES = ["Underwriter", "ML Engineer", "Fraud Investigator", "Catastrophe Modeler"]
# Taxonomy names for a few roles, and one invalid role that is reported and skipped.
DRAUP_NAMES = {"Claims Adjuster": "Claims Handler", "Underwriter": "Insurance Underwriter"}


def demo_submission():
    roles = [
        {"role_name": n, **({"draup_role_name": DRAUP_NAMES[n]} if n in DRAUP_NAMES else {})}
        for n in ROLE_NAMES
    ]
    roles.append({"role_name": "   "})
    return validate_submission(COMPANY, roles, created_by="demo@batch-pipelines.local")


def states_went_as_expected(states: list[str]) -> bool:
    """pending, then in_progress, then partial, and completed at the end (after the retry)."""
    try:
        first_partial = states.index("partial")
    except ValueError:
        return False
    return (
        states[:2] == ["pending", "in_progress"]
        and first_partial >= 2
        and states[-1] == "completed"
    )


def _project(
    instance: dg.DagsterInstance, store_url: str | None, directory: Path
) -> tuple[Path, str, Path] | None:
    """(DAGSTER_HOME, store URL, workspace file) of the project, when the demo runs on it.

    The workspace serves this family alone (quicker run workers) under the project's code
    location name and working directory: sensors' cursors and run keys are kept per
    location name, so `make dev` continues from where the demo's daemon stopped instead of
    launching the demo's roles again, and shows their runs as its own."""
    if not store_url or instance.is_ephemeral:
        return None
    import yaml

    from batch_pipelines.instance import CODE_LOCATION_NAME

    workspace = directory / "workspace.yaml"
    entry = {
        "module_name": CODE_LOCATION_MODULE,
        "location_name": CODE_LOCATION_NAME,
        "working_directory": str(Path.cwd()),
    }
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": entry}]}))
    return Path(instance.root_directory), store_url, workspace


def batch_checks_line(instance: dg.DagsterInstance, batch_id: str) -> str:
    """The standard checks of a role batch's runs, as the instance recorded them: the latest
    evaluation of each check for each role (partition) of the batch."""
    latest: dict[tuple[str, str], Any] = {}
    for name in STANDARD_CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(ASSET_NAME), name)
        # Newest first; a batch's roles are among the last few hundred evaluations.
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=500):
            evaluation = record.event.asset_check_evaluation if record.event else None
            if evaluation is None:
                continue
            metadata = evaluation.metadata
            if getattr(metadata.get("batch_id"), "value", None) != batch_id:
                continue
            partition = getattr(metadata.get("partition"), "value", "")
            latest.setdefault((name, partition), evaluation)
    return checks_line(latest.values())


def run_demo(
    echo: Callable[[str], None],
    directory: Path,
    instance: dg.DagsterInstance,
    store_url: str | None = None,
) -> int:
    """Run this family's demo on the embedded default in ``directory`` (empty, created by the
    caller) with ``instance``; print what happened and where to look; 0 when it did what it
    should.

    The runs need an instance that a daemon process shares, which an ephemeral one is not,
    so the demo makes its own instance folder under ``directory`` from ``instance``'s
    dagster.yaml (the project's when DAGSTER_HOME is set) and dequeues every second. Given
    ``store_url`` (`make demo`) and a persistent ``instance``, it runs on those instead,
    through the project's workspace, so `make dev` shows the batch and its runs.
    """
    # The daemon and its run workers have other working directories: give them absolute paths.
    directory = Path(directory).resolve()
    submission = demo_submission()
    echo(
        f"  {len(ROLE_NAMES)} roles of {COMPANY} (+1 invalid); AI assessment fails on the first attempt for "
        f"{', '.join(FAILING_ROLES)} (injected at the model simulator)"
    )
    for invalid in submission.invalid:
        echo(f"  skipped at submission: {invalid}")
    echo("  starting dagster-daemon (submissions sensor + run queue); each role is one run ...")
    try:
        result = run_batch_through_queue(
            directory,
            submission,
            source_config=project_dagster_yaml(instance),
            failing_roles=[slugify(n) for n in FAILING_ROLES],
            activity_limit=DEFAULT_MAX_CONCURRENT_ACTIVITIES,
            echo=echo,
            project=_project(instance, store_url, directory),
        )
    except QueueTimeout as exc:
        echo(f"  FAILED: {exc}")
        return 1
    final = result.final
    assert final is not None
    ok_states = states_went_as_expected(result.states)
    ok_limit = 0 < result.sampled_peak <= result.limit and result.recorded_peak <= result.limit
    ok_activities = 0 < result.step_peak <= DEFAULT_MAX_CONCURRENT_ACTIVITIES
    ok_final = final.view.completed == len(ROLE_NAMES) and str(final.view.state) == "completed"
    echo(
        f"  states: {' -> '.join(result.states)}  ({'as expected' if ok_states else 'NOT as expected'})"
    )
    echo(
        f"  role runs executing at once: peak {result.sampled_peak} sampled, {result.recorded_peak} from the run "
        f"records; limit {result.limit} ({'held' if ok_limit else 'VIOLATED'})"
    )
    echo(
        f"  roles working (AI assessment step) at once: peak {result.step_peak}; activity limit "
        f"{DEFAULT_MAX_CONCURRENT_ACTIVITIES} ({'held' if ok_activities else 'VIOLATED'})"
    )
    echo(f"  batch cost from the ledger: {money(final.cost)} ({final.tokens} tokens)")
    if store_url and not instance.is_ephemeral:
        echo(f"  {batch_checks_line(instance, result.batch_id)} (the roles' latest runs)")
    sample = final.roles[0]
    echo(
        f"  e.g. {sample.role_name}: {sample.status} at {sample.dashboard_url} (workflow {sample.workflow_id})"
    )
    echo(f"  {final.view.completed}/{final.view.total} roles ready in {result.seconds:.0f}s")
    if store_url and not instance.is_ephemeral:
        echo(f"  where to look: .venv/bin/batch-pipelines roles status {result.batch_id}")
    else:
        echo(
            f"  where to look: DAGSTER_HOME={(directory / 'dagster_home').resolve()} "
            f".venv/bin/batch-pipelines roles status {result.batch_id} "
            f"--database-url sqlite:///{directory / 'batch_store.db'}"
        )
    return 0 if ok_states and ok_limit and ok_activities and ok_final else 1
