"""Batch status from the batch record and the roles' latest runs; retry selection; limits."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.role_onboarding.status import (
    RoleBatchRecord,
    RunView,
    WorkflowRecord,
    compute_batch_status,
    estimated_duration_seconds,
    peak_concurrency,
    role_run_limit,
    select_retry,
)

T0 = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def _batch(n: int, retried: dict[int, int] | None = None) -> RoleBatchRecord:
    workflows = [
        WorkflowRecord(
            f"wf-{i}-1",
            "batch-abc123def456",
            i,
            1,
            f"acme/role-{i}",
            f"Role {i}",
            None,
            {},
            id=i + 1,
        )
        for i in range(n)
    ]
    for i, round_number in (retried or {}).items():
        workflows.append(
            WorkflowRecord(
                f"wf-{i}-{round_number}",
                "batch-abc123def456",
                i,
                round_number,
                f"acme/role-{i}",
                f"Role {i}",
                None,
                {},
                retry_of=f"wf-{i}-1",
                id=100 + i,
            )
        )
    return RoleBatchRecord(
        "batch-abc123def456",
        "acme",
        "me@acme.com",
        {},
        [],
        1,
        T0,
        T0 + timedelta(days=1),
        workflows,
    )


def _runs(statuses: list[str | None], round_number: int = 1) -> dict:
    return {
        (round_number, f"acme/role-{i}"): RunView(
            f"run-{i}", s, 0.0, 10.0 if s in ("SUCCESS", "FAILURE") else None
        )
        for i, s in enumerate(statuses)
        if s is not None
    }


def test_a_batch_without_runs_is_pending_with_every_role_queued():
    status = compute_batch_status(_batch(3), {}, {})
    assert (status.view.total, status.view.queued, str(status.view.state)) == (3, 3, "pending")
    assert {r.status for r in status.roles} == {"queued"}


def test_the_status_counts_roles_by_their_runs_and_shows_dashboards_and_errors():
    batch = _batch(5)
    runs = _runs(["SUCCESS", "FAILURE", "STARTED", "QUEUED", None])
    batch.workflows[1].error = "ai_assessment: timeout"
    status = compute_batch_status(
        batch, runs, {"acme/role-0": "/dashboard/roles/cr-7"}, concurrency=5
    )
    d = status.to_dict()
    assert (d["total"], d["queued"], d["in_progress"], d["completed"], d["failed"]) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert (
        d["state"] == "in_progress" and d["progress_percent"] == 40.0 and d["success_rate"] == 50.0
    )
    assert d["created_at"] == "2026-01-15T10:30:00Z"
    roles = d["roles"]
    assert [r["status"] for r in roles] == ["ready", "failed", "running", "queued", "queued"]
    assert roles[0]["dashboard_url"] == "/dashboard/roles/cr-7" and "error" not in roles[0]
    assert roles[1]["error"] == "ai_assessment: timeout" and "dashboard_url" not in roles[1]


def test_all_settled_with_a_failure_is_partial_and_without_is_completed():
    assert (
        str(compute_batch_status(_batch(2), _runs(["SUCCESS", "FAILURE"]), {}).view.state)
        == "partial"
    )
    assert (
        str(compute_batch_status(_batch(2), _runs(["SUCCESS", "SUCCESS"]), {}).view.state)
        == "completed"
    )


def test_a_batch_in_which_every_role_failed_is_completed_not_partial_as_the_seed_defines():
    # Seed 000: completed = "all roles done (success or fail)", partial = "completed with
    # some failures" (part of it succeeded).
    status = compute_batch_status(_batch(3), _runs(["FAILURE", "CANCELED", "FAILURE"]), {})
    v = status.view
    assert (str(v.state), v.failed, v.total, v.success_rate) == ("completed", 3, 3, 0.0)
    assert len(select_retry(status).retry) == 3


def test_a_role_whose_run_is_gone_from_the_run_storage_is_failed_and_retryable():
    batch = _batch(2)
    batch.workflows[0].run_id = "run-deleted"  # its run started, then was deleted
    status = compute_batch_status(batch, _runs([None, "STARTED"]), {})
    assert [r.status for r in status.roles] == ["failed", "running"]
    assert status.roles[0].error == "run run-deleted is gone from the run storage"
    assert status.roles[0].run_id == "run-deleted"
    assert [r.workflow_id for r in select_retry(status).retry] == ["wf-0-1"]


def test_the_status_shows_the_batchs_cost_and_tokens_from_the_ledger():
    status = compute_batch_status(
        _batch(1), _runs(["SUCCESS"]), {}, cost=Decimal("0.0123456"), tokens=1500
    )
    d = status.to_dict()
    assert (d["cost"], d["tokens"]) == ("0.012346", 1500)
    assert compute_batch_status(_batch(1), {}, {}).to_dict()["cost"] == "0.000000"


def test_a_run_that_died_without_reporting_a_step_still_says_why_the_role_failed():
    status = compute_batch_status(_batch(1), _runs(["CANCELED"]), {})
    assert status.roles[0].error == "run run-0 ended CANCELED before reporting a step"


def test_a_retried_role_counts_by_its_new_attempt_and_is_queued_until_its_run_exists():
    batch = _batch(2, retried={1: 2})
    runs = _runs(["SUCCESS", "FAILURE"])
    status = compute_batch_status(batch, runs, {})
    assert [r.status for r in status.roles] == ["ready", "queued"]
    assert status.roles[1].workflow_id == "wf-1-2" and status.roles[1].attempt == 2
    runs[(2, "acme/role-1")] = RunView("run-new", "SUCCESS", 0.0, 5.0)
    assert str(compute_batch_status(batch, runs, {}).view.state) == "completed"


def test_a_role_shows_its_latest_runs_id_else_the_run_id_its_workflow_recorded():
    batch = _batch(3)
    batch.workflows[1].run_id = "run-recorded"
    roles = compute_batch_status(batch, _runs(["SUCCESS"]), {}).to_dict()["roles"]
    assert [r["run_id"] for r in roles] == ["run-0", "run-recorded", None]


def test_retry_takes_every_failed_role_or_only_the_given_failed_workflows():
    status = compute_batch_status(_batch(3), _runs(["FAILURE", "SUCCESS", "FAILURE"]), {})
    assert [r.workflow_id for r in select_retry(status).retry] == ["wf-0-1", "wf-2-1"]
    chosen = select_retry(status, ["wf-2-1", "wf-1-1"])
    assert [r.workflow_id for r in chosen.retry] == ["wf-2-1"]
    assert chosen.untouched == [("wf-1-1", "Role 1 is ready, only failed roles are retried")]


def test_retrying_a_workflow_that_is_not_current_in_the_batch_is_refused():
    status = compute_batch_status(_batch(1, retried={0: 2}), _runs(["FAILURE"]), {})
    with pytest.raises(ConfigurationError, match="wf-0-1"):
        select_retry(status, ["wf-0-1"])


def test_the_role_run_limit_is_read_from_the_tag_concurrency_limits():
    limits = [
        {"key": "batch_pipelines/concurrency_group", "value": "risk_modeling", "limit": 4},
        {"key": "batch_pipelines/concurrency_group", "value": "role_onboarding", "limit": 5},
    ]
    assert role_run_limit(limits, 20) == 5
    assert role_run_limit(limits, 3) == 3
    assert role_run_limit(limits[:1], -1) is None
    assert role_run_limit([{"key": "batch_pipelines/concurrency_group", "limit": 2}], None) == 2


def test_the_estimate_follows_the_seeds_throughput_table():
    assert estimated_duration_seconds(50, role_seconds=900, concurrency=5) == 2.5 * 3600
    assert estimated_duration_seconds(5, role_seconds=900, concurrency=5) == 900
    assert estimated_duration_seconds(0, role_seconds=900, concurrency=5) == 0


def test_peak_concurrency_counts_overlaps_but_not_back_to_back_intervals():
    assert peak_concurrency([(0, 10), (10, 20), (20, 30)]) == 1
    assert peak_concurrency([(0, 10), (5, 15), (6, 7), (14, 20)]) == 3
    assert peak_concurrency([]) == 0


STATUSES = st.sampled_from(
    [None, "QUEUED", "STARTING", "STARTED", "SUCCESS", "FAILURE", "CANCELED"]
)


@given(st.lists(STATUSES, min_size=1, max_size=40))
def test_counts_always_add_up_and_the_state_follows_the_aggregated_view_rules(statuses):
    status = compute_batch_status(_batch(len(statuses)), _runs(statuses), {})
    v = status.view
    assert v.queued + v.in_progress + v.completed + v.failed == v.total == len(statuses)
    unsettled = v.queued + v.in_progress
    if v.queued == v.total:
        assert str(v.state) == "pending"
    elif unsettled == 0:
        assert str(v.state) == ("partial" if v.failed and v.completed else "completed")
    else:
        assert str(v.state) == "in_progress"
    assert len(select_retry(status).retry) == v.failed


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 50)), max_size=30))
def test_peak_concurrency_is_never_more_than_the_intervals_nor_less_than_one_when_any(raw):
    intervals = [(s, s + d) for s, d in raw]
    peak = peak_concurrency(intervals)
    assert (peak == 0) == (not intervals)
    assert peak <= len(intervals)
