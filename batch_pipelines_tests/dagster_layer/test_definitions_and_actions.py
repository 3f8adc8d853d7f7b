"""The code location loads, and the batch actions launched from the UI change the store."""

import dagster as dg
import pytest

from batch_pipelines.batch_actions.jobs import batch_control, resubmit_jobs
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.definitions import defs
from batch_pipelines.resources import BatchStoreResource, RiskModelerResource, default_resources
from batch_pipelines.store.batch_store import JobChange


def test_the_code_location_loads_with_its_jobs_and_resources():
    d = defs()
    assert d.resolve_job_def("batch_control") and d.resolve_job_def("resubmit_jobs")
    assert set(default_resources()) == {"batch_store", "risk_modeler", "models", "teams"}


def test_an_env_var_becomes_a_dagster_env_var_and_never_its_value(monkeypatch):
    monkeypatch.setenv("RISK_MODELER_API_KEY", "top-secret")
    monkeypatch.setenv("RISK_MODELER_BASE_URL", "https://api-euw1.example.invalid/riskmodeler")
    resource = default_resources()["risk_modeler"]
    assert isinstance(resource, RiskModelerResource)
    assert "top-secret" not in repr(resource)


def _batch(store):
    batch_id = store.create_batch(
        family="test", batch_type="t", job_configurations=[{"key": "a"}, {"key": "b"}]
    )
    store.activate_batch(batch_id)
    return batch_id


def test_pause_resume_and_cancel_jobs_move_the_batch(store, database_url):
    batch_id = _batch(store)
    resources = {"batch_store": BatchStoreResource(database_url=database_url)}
    for action, expected in [
        ("pause", BatchStatus.PAUSED),
        ("resume", BatchStatus.ACTIVE),
        ("cancel", BatchStatus.CANCELLED),
    ]:
        result = batch_control.execute_in_process(
            run_config={
                "ops": {"change_batch_status": {"config": {"batch_id": batch_id, "action": action}}}
            },
            resources=resources,
        )
        assert result.success
        assert store.get_batch(batch_id).status == expected


def test_an_illegal_action_fails_the_run_with_the_reason(store, database_url):
    batch_id = _batch(store)
    store.set_batch_status(batch_id, BatchStatus.CANCELLED)
    with pytest.raises(Exception, match="CANCELLED to PAUSED"):
        batch_control.execute_in_process(
            run_config={
                "ops": {
                    "change_batch_status": {"config": {"batch_id": batch_id, "action": "pause"}}
                }
            },
            resources={"batch_store": BatchStoreResource(database_url=database_url)},
        )


def test_resubmitting_from_the_ui_creates_a_child_job_and_reopens_the_batch(store, database_url):
    batch_id = _batch(store)
    job = store.list_jobs(batch_id)[0]
    store.apply_job_changes([JobChange(job.id, JobStatus.INITIATED, JobStatus.SUBMITTED)])
    store.apply_job_changes([JobChange(job.id, JobStatus.SUBMITTED, JobStatus.FAILED)])
    result = resubmit_jobs.execute_in_process(
        run_config={
            "ops": {
                "resubmit_batch_jobs": {
                    "config": {
                        "job_ids": [job.id],
                        "configuration_json": '{"fixed": true}',
                        "override_reason": "bad key",
                    }
                }
            }
        },
        resources={"batch_store": BatchStoreResource(database_url=database_url)},
    )
    assert result.success
    (new_id,) = result.output_for_node("resubmit_batch_jobs")
    new = store.get_job(new_id)
    assert new.parent_job_id == job.id and new.configuration == {"fixed": True}


def test_bad_replacement_json_is_a_clear_error(store, database_url):
    with pytest.raises(dg.Failure, match="not valid JSON"):
        resubmit_jobs.execute_in_process(
            run_config={
                "ops": {
                    "resubmit_batch_jobs": {
                        "config": {"job_ids": [1], "configuration_json": "{nope"}
                    }
                }
            },
            resources={"batch_store": BatchStoreResource(database_url=database_url)},
        )


def _resubmit_with_run_retries(job_ids, database_url):
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 2}}
    ) as instance:
        result = resubmit_jobs.execute_in_process(
            run_config={"ops": {"resubmit_batch_jobs": {"config": {"job_ids": job_ids}}}},
            resources={"batch_store": BatchStoreResource(database_url=database_url)},
            instance=instance,
            raise_on_error=False,
        )
        return result, instance.get_run_by_id(result.run_id).tags


def test_resubmitting_an_unknown_job_fails_once_and_is_not_retried(store, database_url):
    result, tags = _resubmit_with_run_retries([424242], database_url)
    assert not result.success
    failure = result.failure_data_for_node("resubmit_batch_jobs").user_failure_data
    assert "424242" in failure.description
    assert failure.metadata["retryable"].value is False
    assert failure.metadata["error_code"].value == "BP-NOT-FOUND"
    assert "424242" in failure.metadata["errors"].value
    assert tags["dagster/will_retry"] == "false"  # the instance's run_retries leave it alone
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_an_unreachable_store_is_a_transient_fault_the_op_retries(tmp_path):
    # A PostgreSQL port nothing listens on: the connection is refused at once.
    result, _ = _resubmit_with_run_retries([1], "postgresql+psycopg2://postgres@127.0.0.1:9/none")
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2


def test_a_refused_batch_action_is_a_final_failure_that_run_retries_leave_alone(
    store, database_url
):
    batch_id = _batch(store)
    store.set_batch_status(batch_id, BatchStatus.CANCELLED)
    for refused in (batch_id, 987654):  # an illegal transition, an unknown batch
        with dg.instance_for_test(
            overrides={"run_retries": {"enabled": True, "max_retries": 2}}
        ) as instance:
            result = batch_control.execute_in_process(
                run_config={
                    "ops": {
                        "change_batch_status": {"config": {"batch_id": refused, "action": "pause"}}
                    }
                },
                resources={"batch_store": BatchStoreResource(database_url=database_url)},
                instance=instance,
                raise_on_error=False,
            )
            tags = instance.get_run_by_id(result.run_id).tags
        assert not result.success
        assert tags["dagster/will_retry"] == "false"  # the instance's run_retries leave it alone
        failure = result.failure_data_for_node("change_batch_status").user_failure_data
        assert failure is not None, "an unexpected exception would be retried twice"
        assert failure.metadata["retryable"].value is False
        assert failure.metadata["error_code"].value in ("BP-TRANSITION", "BP-NOT-FOUND")
