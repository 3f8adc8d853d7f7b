"""Submission paths: the UI job stores a batch, the sensor launches one run per stored
workflow exactly once (cursor and run keys), retry failed joins the batch, the feature
flag refuses submissions, and the status follows the runs in the instance."""

from datetime import timedelta

import dagster as dg
import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import BatchStoreResource, ModelsResource, resolved
from batch_pipelines.role_onboarding.assets import role_onboarding
from batch_pipelines.role_onboarding.jobs import (
    cleanup_expired_role_batches,
    retry_failed_roles,
    role_batch_cleanup_schedule,
    role_batch_status,
    submit_role_batch,
)
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings, default_settings
from batch_pipelines.role_onboarding.sensors import (
    parse_cursor,
    plan_launches,
    role_batch_submissions,
)
from batch_pipelines.role_onboarding.service import (
    apply_activity_limit,
    batch_status,
    retry_failed,
    role_run_limit_of,
    submit_batch,
)
from batch_pipelines.role_onboarding.status import (
    ACTIVITY_POOL,
    BATCH_TAG,
    CONCURRENCY_TAG_KEY,
    ROUND_TAG,
    WORKFLOW_TAG,
    activity_limit_change,
    check_workflow_limit,
)
from batch_pipelines.role_onboarding.store import BatchExpired, RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import validate_submission
from batch_pipelines.store.batch_store import BatchStore

SUBMISSION = {
    "company_id": "liberty-mutual",
    "roles": [
        {"role_name": "Claims Adjuster", "draup_role_name": "Claims Handler"},
        {"role_name": "Underwriter", "draup_role_id": "Insurance Underwriter"},
        {"role_name": "Risk Analyst"},
        {"role_name": " "},
    ],
    "created_by": "admin@company.com",
}


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def _resources(store_url, **settings):
    return {
        "batch_store": BatchStoreResource(database_url=store_url),
        "models": ModelsResource(),
        "role_onboarding_settings": RoleOnboardingSettings(**settings),
    }


def _submit_job(instance, store_url, **settings):
    return submit_role_batch.execute_in_process(
        run_config={"ops": {"store_role_batch": {"config": SUBMISSION}}},
        resources=_resources(store_url, **settings),
        instance=instance,
        raise_on_error=False,
    )


def _sensor(instance, store_url, cursor=None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "batch_store": BatchStoreResource(database_url=store_url),
            "role_onboarding_settings": RoleOnboardingSettings(),
        },
    )
    return role_batch_submissions(context)


def test_the_submit_job_stores_the_batch_adds_partitions_and_reports_skipped_roles(store_url):
    with dg.instance_for_test() as instance:
        result = _submit_job(instance, store_url)
        assert result.success
        batch_id = result.output_for_node("store_role_batch")
        assert instance.get_dynamic_partitions("role") == [
            "liberty-mutual/claims-adjuster", "liberty-mutual/underwriter", "liberty-mutual/risk-analyst",
        ]  # fmt: skip
        assert instance.get_run_by_id(result.run_id).tags[BATCH_TAG] == batch_id
        (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        response = output.step_output_data.metadata["response"].value
    # total_roles is the seed's: every role of the request, the skipped invalid one included.
    assert response["status"] == "queued" and response["total_roles"] == 4
    assert len(response["workflow_ids"]) == response["queued_roles"] == 3
    assert response["invalid_roles"] == [
        {"index": 3, "role_name": None, "field": "role_name", "reason": "is required"}
    ]
    assert (
        response["message"]
        == "Batch submitted: 3 roles queued for processing; 1 invalid role skipped"
    )


def test_the_feature_flag_refuses_submissions_and_stores_nothing(store_url):
    with dg.instance_for_test() as instance:
        result = _submit_job(instance, store_url, batch_submission_enabled="false")
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert (
            "disabled by its feature flag"
            in failure.step_failure_data.user_failure_data.description
        )
        assert RoleOnboardingStore(BatchStore(store_url)).workflows_after(0) == []


def test_the_sensor_requests_one_run_per_workflow_once_with_the_queue_and_status_tags(store_url):
    with dg.instance_for_test() as instance:
        batch_id = _submit_job(instance, store_url).output_for_node("store_role_batch")
        first = _sensor(instance, store_url)
        assert len(first.run_requests) == 3
        request = first.run_requests[0]
        assert request.partition_key == "liberty-mutual/claims-adjuster"
        assert request.run_key == request.tags[WORKFLOW_TAG]
        assert request.tags[CONCURRENCY_TAG_KEY] == "role_onboarding"
        assert request.tags[BATCH_TAG] == batch_id and request.tags[ROUND_TAG] == f"{batch_id}#1"
        config = request.run_config["ops"]["role_onboarding"]["config"]
        assert config["draup_role_name"] == "Claims Handler" and config["attempt"] == 1
        assert first.dynamic_partitions_requests[0].partition_keys == [
            r.partition_key for r in first.run_requests
        ]
        again = _sensor(instance, store_url, cursor=first.cursor)
        assert isinstance(again, dg.SkipReason)


def test_the_launch_plan_skips_what_the_cursor_has_seen_and_a_bad_cursor_starts_over():
    assert parse_cursor("junk") == 0 and parse_cursor(None) == 0 and parse_cursor("7") == 7
    assert plan_launches([], 4) == ([], [], 4)


def _execute(instance, store_url, request, **settings):
    return dg.materialize(
        [role_onboarding],
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        resources=_resources(store_url, **settings),
        raise_on_error=False,
    )


def test_status_follows_the_runs_and_retry_failed_brings_the_batch_to_completed(store_url):
    settings = {"simulated_assessment_failures": "underwriter"}
    store = RoleOnboardingStore(BatchStore(store_url))
    with dg.instance_for_test() as instance:
        batch_id = _submit_job(instance, store_url).output_for_node("store_role_batch")
        assert str(batch_status(instance, store, batch_id).view.state) == "pending"
        launched = _sensor(instance, store_url)
        for request in launched.run_requests:
            _execute(instance, store_url, request, **settings)
        status = batch_status(instance, store, batch_id)
        assert (str(status.view.state), status.view.completed, status.view.failed) == (
            "partial",
            2,
            1,
        )
        failed = next(r for r in status.roles if r.status == "failed")
        assert failed.error.startswith("ai_assessment: ")
        ready = next(r for r in status.roles if r.status == "ready")
        assert ready.dashboard_url.startswith("/dashboard/roles/cr-")

        retried = retry_failed_roles.execute_in_process(
            run_config={"ops": {"retry_failed_role_workflows": {"config": {"batch_id": batch_id}}}},
            resources=_resources(store_url),
            instance=instance,
        ).output_for_node("retry_failed_role_workflows")
        assert retried["retried_count"] == 1 and retried["retried_workflow_ids"] == [
            failed.workflow_id
        ]
        assert str(batch_status(instance, store, batch_id).view.state) == "in_progress"
        relaunch = _sensor(instance, store_url, cursor=launched.cursor)
        assert [r.tags[ROUND_TAG] for r in relaunch.run_requests] == [f"{batch_id}#2"]
        _execute(instance, store_url, relaunch.run_requests[0], **settings)
        final = batch_status(instance, store, batch_id)
        shown = role_batch_status.execute_in_process(
            run_config={"ops": {"report_role_batch_status": {"config": {"batch_id": batch_id}}}},
            resources=_resources(store_url),
            instance=instance,
        )
        (output,) = [e for e in shown.all_events if e.event_type_value == "STEP_OUTPUT"]
        ui = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (ui["state"], ui["completed"], ui["progress_percent"]) == ("completed", 3, 100.0)
    assert [r.data["status"] for r in ui["roles"].records] == ["ready", "ready", "ready"]
    assert (str(final.view.state), final.view.completed, final.view.success_rate) == (
        "completed",
        3,
        100.0,
    )
    assert {r.workflow_id for r in final.roles if r.status == "ready"} >= set(
        retried["new_workflow_ids"]
    )


def test_retry_of_given_workflow_ids_leaves_roles_that_did_not_fail_untouched(store_url):
    store = RoleOnboardingStore(BatchStore(store_url))
    with dg.instance_for_test() as instance:
        submitted = submit_batch(
            store,
            validate_submission("acme", [{"role_name": "Actuary"}]),
            enabled=True,
            ttl=timedelta(hours=1),
            role_seconds=900,
            concurrency=5,
        )
        wf = submitted.batch.workflows[0].workflow_id
        response = retry_failed(instance, store, submitted.batch.batch_id, workflow_ids=[wf])
    assert (
        response["retried_count"] == 0
        and response["untouched"][0]["reason"] == "Actuary is queued, only failed roles are retried"
    )


def test_the_cleanup_job_deletes_expired_batches_and_runs_hourly(store_url):
    store = RoleOnboardingStore(BatchStore(store_url))
    submitted = submit_batch(
        store,
        validate_submission("acme", [{"role_name": "Actuary"}]),
        enabled=True,
        ttl=timedelta(seconds=1),
        role_seconds=900,
        concurrency=5,
        now=__import__("datetime").datetime(2020, 1, 1, tzinfo=__import__("datetime").UTC),
    )
    with dg.instance_for_test() as instance:
        result = cleanup_expired_role_batches.execute_in_process(
            resources=_resources(store_url), instance=instance
        )
    assert result.output_for_node("delete_expired_role_batches") == [submitted.batch.batch_id]
    with pytest.raises(BatchExpired):
        store.get_batch(submitted.batch.batch_id)
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(2026, 1, 1, 10, 17)
    )
    assert role_batch_cleanup_schedule.cron_schedule == "17 * * * *"
    assert role_batch_cleanup_schedule.evaluate_tick(context).run_requests


def test_the_role_run_limit_comes_from_the_instances_run_queue(tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "concurrency:\n  runs:\n    tag_concurrency_limits:\n"
        "      - key: batch_pipelines/concurrency_group\n        value: role_onboarding\n        limit: 3\n"
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert role_run_limit_of(instance) == 3
    with dg.DagsterInstance.ephemeral() as instance:
        assert role_run_limit_of(instance) == 5  # no run queue: the seed's default feeds estimates


def test_the_family_code_location_serves_its_jobs_sensor_schedule_and_settings():
    from batch_pipelines.role_onboarding.code_location import defs

    d = defs()
    for job in (
        "submit_role_batch",
        "retry_failed_roles",
        "role_batch_status",
        "cleanup_expired_role_batches",
    ):
        assert d.resolve_job_def(job).name == job
    assert d.resolve_job_def("role_onboarding_job").partitions_def.name == "role"
    assert d.resolve_sensor_def("role_batch_submissions")
    assert d.resolve_sensor_def("role_submissions_drop_sensor").job_name == "submit_role_batch"
    assert d.resolve_schedule_def("cleanup_expired_role_batches_schedule")
    assert {"batch_store", "models", "role_onboarding_settings"} <= set(d.resources)


def test_the_feature_flag_is_read_from_its_environment_variable_at_run_time(store_url, monkeypatch):
    from batch_pipelines.role_onboarding.resources import default_settings

    monkeypatch.setenv("ROLE_ONBOARDING_BATCH_SUBMISSION_ENABLED", "false")
    settings = default_settings()
    assert "false" not in repr(
        settings.batch_submission_enabled
    )  # an EnvVar reference, not its value
    with dg.instance_for_test() as instance:
        result = submit_role_batch.execute_in_process(
            run_config={"ops": {"store_role_batch": {"config": SUBMISSION}}},
            resources={
                "batch_store": BatchStoreResource(database_url=store_url),
                "role_onboarding_settings": settings,
            },
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success


def test_the_activity_limit_is_the_role_steps_pool_and_the_sensor_gives_it_the_env_limit(
    store_url, monkeypatch
):
    # Seed 000: 5 concurrent activities (AI assessments) per 10 concurrent workflows.
    assert role_onboarding.op.pool == ACTIVITY_POOL
    monkeypatch.setenv("ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES", "3")
    settings = resolved(default_settings())
    assert settings.max_concurrent_activities == 3
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={
                "batch_store": BatchStoreResource(database_url=store_url),
                "role_onboarding_settings": settings,
            },
        )
        role_batch_submissions(context)
        assert instance.event_log_storage.get_concurrency_info(ACTIVITY_POOL).slot_count == 3
        assert apply_activity_limit(instance, 3) is None  # unchanged: nothing written
        assert apply_activity_limit(instance, 5) == 5
        assert instance.event_log_storage.get_concurrency_info(ACTIVITY_POOL).slot_count == 5
    assert RoleOnboardingSettings().max_concurrent_activities == 5


def test_an_activity_limit_below_one_is_refused_naming_its_variable():
    with pytest.raises(ConfigurationError, match="ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES"):
        activity_limit_change(5, 0)
    assert activity_limit_change(None, 5) == 5 and activity_limit_change(5, 5) is None


def test_the_workflow_limit_variable_must_be_the_run_queues_role_limit():
    check_workflow_limit(None, 10)
    check_workflow_limit(10, 10)
    with pytest.raises(ConfigurationError, match="is 12 but .* a limit of 10: set the `limit`"):
        check_workflow_limit(12, 10)
    with pytest.raises(ConfigurationError, match="at least 1"):
        check_workflow_limit(-1, 10)


def test_the_sensor_refuses_to_launch_while_the_workflow_limit_variable_disagrees_with_dagster_yaml(
    tmp_path, store_url, monkeypatch
):
    from batch_pipelines.role_onboarding.queue_harness import (
        project_dagster_yaml,
        write_instance_config,
    )

    write_instance_config(project_dagster_yaml(), tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:

        def tick():
            context = dg.build_sensor_context(
                instance=instance,
                resources={
                    "batch_store": BatchStoreResource(database_url=store_url),
                    "role_onboarding_settings": resolved(default_settings()),
                },
            )
            return role_batch_submissions(context)

        monkeypatch.setenv("ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS", "10")
        assert isinstance(tick(), dg.SkipReason)
        monkeypatch.setenv("ROLE_ONBOARDING_MAX_CONCURRENT_WORKFLOWS", "12")
        with pytest.raises(ConfigurationError, match="MAX_CONCURRENT_WORKFLOWS is 12"):
            tick()


def test_estimates_use_the_smaller_of_the_workflow_and_activity_limits_as_in_the_seeds_table(
    tmp_path,
):
    from batch_pipelines.role_onboarding.queue_harness import (
        project_dagster_yaml,
        write_instance_config,
    )
    from batch_pipelines.role_onboarding.service import role_concurrency_of
    from batch_pipelines.role_onboarding.status import estimated_duration_seconds

    write_instance_config(project_dagster_yaml(), tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert role_run_limit_of(instance) == 10 and role_concurrency_of(instance) == 5
        # Seed 000: 50 roles, 5 concurrent workers, ~15 min each -> ~2.5 hours.
        assert (
            estimated_duration_seconds(
                50, role_seconds=900, concurrency=role_concurrency_of(instance)
            )
            == 9000
        )
        apply_activity_limit(instance, 2)
        assert role_concurrency_of(instance) == 2
