"""The run queue, not our code, throttles role runs: a real daemon with a role-run limit of
2 never lets more than 2 role runs execute at once, and the batch still completes."""

import pytest

from batch_pipelines.role_onboarding.queue_harness import (
    project_dagster_yaml,
    run_batch_through_queue,
    write_instance_config,
)
from batch_pipelines.role_onboarding.service import role_run_limit_of
from batch_pipelines.role_onboarding.submission import validate_submission


def test_the_demo_instance_config_keeps_the_projects_limits_and_can_lower_the_role_limit(tmp_path):
    import dagster as dg

    write_instance_config(project_dagster_yaml(), tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert role_run_limit_of(instance) == 10  # seed 000's max concurrent workflows
    write_instance_config(project_dagster_yaml(), tmp_path / "low", role_run_limit=2)
    with dg.DagsterInstance.from_config(str(tmp_path / "low")) as instance:
        assert role_run_limit_of(instance) == 2


@pytest.mark.slow
def test_a_daemon_never_runs_more_role_runs_at_once_than_the_tag_concurrency_limit(tmp_path):
    submission = validate_submission("acme", [{"role_name": f"Role {i}"} for i in range(4)])
    result = run_batch_through_queue(
        tmp_path,
        submission,
        source_config=project_dagster_yaml(),
        failing_roles=[],
        model_latency_ms=1000,  # runs last long enough to overlap if the queue let them
        role_run_limit=2,
        retry=False,
        timeout_seconds=100,
        echo=lambda line: None,
    )
    assert result.limit == 2
    assert str(result.final.view.state) == "completed" and result.final.view.completed == 4
    assert 1 <= result.sampled_peak <= 2
    assert 1 <= result.recorded_peak <= 2
    assert result.states[0] == "pending" and result.states[-1] == "completed"


@pytest.mark.slow
def test_a_daemon_never_runs_more_role_steps_at_once_than_the_activity_limit(tmp_path):
    """Seed 000's two limits: 4 workflows (role runs) may run, only 2 activities (role
    steps, the AI assessment) at once: the run queue holds back runs whose pool is full."""
    submission = validate_submission("acme", [{"role_name": f"Role {i}"} for i in range(4)])
    result = run_batch_through_queue(
        tmp_path,
        submission,
        source_config=project_dagster_yaml(),
        failing_roles=[],
        model_latency_ms=1000,
        role_run_limit=4,
        activity_limit=2,
        retry=False,
        timeout_seconds=120,
        echo=lambda line: None,
    )
    assert str(result.final.view.state) == "completed" and result.final.view.completed == 4
    assert result.limit == 4 and 1 <= result.step_peak <= 2


def test_the_demo_submits_twenty_roles_and_reports_its_one_invalid_role():
    from batch_pipelines.role_onboarding.demo import FAILING_ROLES, demo_submission

    submission = demo_submission()
    assert len(submission.valid) == 20 and [r.index for r in submission.invalid] == [20]
    assert set(FAILING_ROLES) <= {r.role_name for r in submission.valid}


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["pending", "in_progress", "partial", "in_progress", "completed"], True),
        (["pending", "in_progress", "completed"], False),  # nothing failed: no partial seen
        (["in_progress", "partial", "in_progress", "completed"], False),  # never seen pending
        (["pending", "in_progress", "partial"], False),  # the retry did not complete it
    ],
)
def test_the_demo_accepts_only_pending_then_in_progress_then_partial_then_completed(
    states, expected
):
    from batch_pipelines.role_onboarding.demo import states_went_as_expected

    assert states_went_as_expected(states) is expected


@pytest.mark.slow
def test_a_batch_whose_daemon_was_killed_finishes_after_the_daemon_restarts(tmp_path):
    """Issue 12 (16): SIGKILL the daemon's process group (daemon, code server, run workers)
    while role runs execute, start a new daemon: run monitoring finds the dead runs and fails
    them, which frees their slots, run retries relaunch them and the batch completes."""
    import time
    from datetime import timedelta

    import dagster as dg

    from batch_pipelines.role_onboarding.queue_harness import Daemon
    from batch_pipelines.role_onboarding.service import batch_status, submit_batch
    from batch_pipelines.role_onboarding.status import BATCH_TAG
    from batch_pipelines.role_onboarding.store import RoleOnboardingStore
    from batch_pipelines.store.batch_store import BatchStore

    home = tmp_path / "dagster_home"
    # The project's run monitoring, with seconds instead of minutes: how often it looks, and
    # how long a run killed before its worker started may stay STARTING.
    write_instance_config(
        project_dagster_yaml(),
        home,
        role_run_limit=2,
        run_monitoring={"poll_interval_seconds": 1, "start_timeout_seconds": 15},
    )
    store_url = f"sqlite:///{tmp_path / 'batch_store.db'}"
    base_store = BatchStore(store_url)
    store = RoleOnboardingStore(base_store)
    env = {
        "BATCH_PIPELINES_DATABASE_URL": store_url,
        "ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS": "1500",  # runs last a few seconds
    }
    submission = validate_submission("acme", [{"role_name": f"Role {i}"} for i in range(5)])
    instance = dg.DagsterInstance.from_config(str(home))

    def wait_for(what, ready, seconds, daemon):
        deadline = time.monotonic() + seconds
        while not ready():
            assert time.monotonic() < deadline, f"{what} not seen; daemon log:\n{daemon.log_tail()}"
            time.sleep(0.5)

    try:
        killed = Daemon(home, tmp_path, env)
        with killed:
            batch_id = submit_batch(
                store,
                submission,
                enabled=True,
                ttl=timedelta(hours=1),
                role_seconds=5,
                concurrency=2,
            ).batch.batch_id
            started = dg.RunsFilter(
                tags={BATCH_TAG: batch_id}, statuses=[dg.DagsterRunStatus.STARTED]
            )
            wait_for(
                "a started role run", lambda: instance.get_runs_count(started) >= 1, 90, killed
            )
            killed.kill()
        stuck = batch_status(instance, store, batch_id).view
        assert stuck.in_progress >= 1 and stuck.completed < 5  # dead runs look in progress

        with Daemon(home, tmp_path, env) as restarted:
            wait_for(
                "the batch completed",
                lambda: str(batch_status(instance, store, batch_id).view.state) == "completed",
                150,
                restarted,
            )
        final = batch_status(instance, store, batch_id)
        assert final.view.completed == 5 and final.view.failed == 0
        dead = instance.get_runs(
            dg.RunsFilter(tags={BATCH_TAG: batch_id}, statuses=[dg.DagsterRunStatus.FAILURE])
        )
        assert dead, "the runs the kill interrupted were failed by run monitoring"
    finally:
        instance.dispose()
        base_store.dispose()
