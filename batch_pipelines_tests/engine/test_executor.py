"""The engine with scripted handlers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import BatchError
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.engine.executor import EngineOptions, run_batch
from batch_pipelines_tests.engine.fakes import BrokenTracker, ScriptedHandler

FAST = dict(poll_interval_seconds=0.01, poll_max_interval_seconds=0.05, control_check_seconds=0.02)


def _batch(store, n):
    return store.create_batch(
        family="test",
        batch_type="t",
        job_configurations=[{"key": f"job-{i:04d}"} for i in range(n)],
    )


def _run(store, batch_id, handler, **opts):
    options = EngineOptions(
        **{**FAST, "submit_retry": RetryPolicy(max_retries=2, backoff_base_seconds=0.001), **opts}
    )
    return asyncio.run(run_batch(store, batch_id, handler, options))


def test_a_sync_batch_finishes_every_job_once_within_the_concurrency_limit(store):
    batch_id = _batch(store, 60)
    handler = ScriptedHandler(delay=0.005)
    result = _run(store, batch_id, handler, concurrency=7)
    assert result.status == BatchStatus.COMPLETED and result.stopped == "settled"
    assert sorted(handler.submissions) == [f"job-{i:04d}" for i in range(60)]
    assert handler.max_in_flight <= 7
    assert handler.max_in_flight >= 2  # concurrency is actually used
    assert result.counts == {"FINISHED": 60}


def test_an_async_batch_is_tracked_to_terminal_states_and_logged(store):
    batch_id = _batch(store, 5)
    handler = ScriptedHandler(execution="async", polls_to_finish=3)
    result = _run(store, batch_id, handler, concurrency=5)
    assert result.status == BatchStatus.COMPLETED
    jobs = store.list_jobs(batch_id)
    assert all(j.workflow_id == f"wf-{j.id}" and j.finished_at is not None for j in jobs)
    assert [r["status"] for r in store.tracking_log(jobs[0].id)] == ["RUNNING", "FINISHED"]


def test_one_failing_job_never_stops_the_rest_and_the_batch_reconciles_error(store):
    batch_id = _batch(store, 10)
    handler = ScriptedHandler(fail_keys={"job-0003"})
    result = _run(store, batch_id, handler, concurrency=3)
    assert result.status == BatchStatus.ERROR
    assert result.counts == {"FINISHED": 9, "ERROR": 1}
    (bad,) = store.list_jobs(batch_id, statuses=[JobStatus.ERROR])
    assert "cannot submit job-0003" in bad.last_error
    assert result.reconciliation.summary.error_job_ids == [bad.id]


def test_a_transient_submission_failure_is_retried_on_the_same_job(store):
    batch_id = _batch(store, 3)
    handler = ScriptedHandler(flaky_keys={"job-0001"})
    result = _run(store, batch_id, handler)
    assert result.status == BatchStatus.COMPLETED
    assert handler.submissions.count("job-0001") == 2
    assert store.list_jobs(batch_id)[1].submit_attempts == 1  # one claim, retried inside it


def test_a_failed_workflow_makes_the_batch_failed_with_its_id(store):
    batch_id = _batch(store, 4)
    handler = ScriptedHandler(execution="async", workflow_failed_keys={"job-0002"})
    result = _run(store, batch_id, handler)
    assert result.status == BatchStatus.FAILED
    failed = store.list_jobs(batch_id, statuses=[JobStatus.FAILED])
    assert result.reconciliation.summary.failed_job_ids == [j.id for j in failed]
    assert failed[0].last_error == "model crashed"


def test_tracking_survives_a_flaky_status_endpoint(store):
    batch_id = _batch(store, 3)
    result = _run(store, batch_id, BrokenTracker(failures=3))
    assert result.status == BatchStatus.COMPLETED


def test_errored_jobs_are_resubmitted_by_the_next_run_but_not_in_a_loop_by_the_same_one(store):
    batch_id = _batch(store, 3)
    handler = ScriptedHandler(fail_keys={"job-0000"})
    assert _run(store, batch_id, handler).status == BatchStatus.ERROR
    assert handler.submissions.count("job-0000") == 1
    handler.fail_keys.clear()
    store.activate_batch(batch_id)
    assert _run(store, batch_id, handler).status == BatchStatus.COMPLETED
    assert handler.submissions.count("job-0000") == 2
    assert handler.submissions.count("job-0001") == 1


def test_pausing_lets_in_flight_jobs_finish_then_stops_and_resume_completes(store):
    batch_id = _batch(store, 40)
    seen = []

    def pause_after_five(job):
        seen.append(job.id)
        if len(seen) == 5:
            store.set_batch_status(batch_id, BatchStatus.PAUSED)

    handler = ScriptedHandler(delay=0.02, on_submit=pause_after_five)
    result = _run(store, batch_id, handler, concurrency=2)
    assert result.stopped == "paused" and result.status == BatchStatus.PAUSED
    done = result.counts.get("FINISHED", 0)
    assert 5 <= done < 40
    assert result.counts.get("INITIATED", 0) == 40 - done
    with pytest.raises(BatchError, match="PAUSED"):
        _run(store, batch_id, handler)
    store.set_batch_status(batch_id, BatchStatus.ACTIVE)
    handler.on_submit = None
    assert _run(store, batch_id, handler).status == BatchStatus.COMPLETED
    assert len(handler.submissions) == len(set(handler.submissions)) == 40


def test_cancelling_stops_submissions_and_cancels_in_flight_workflows(store):
    batch_id = _batch(store, 30)
    submitted = []

    def cancel_after_three(job):
        submitted.append(job.id)
        if len(submitted) == 3:
            store.set_batch_status(batch_id, BatchStatus.CANCELLED)

    handler = ScriptedHandler(
        execution="async", delay=0.01, polls_to_finish=10_000, on_submit=cancel_after_three
    )
    result = _run(store, batch_id, handler, concurrency=1)
    assert result.stopped == "cancelled"
    assert result.status == BatchStatus.CANCELLED
    assert set(result.counts) == {"CANCELLED"}
    assert handler.cancelled  # in-flight workflows were asked to cancel


def test_progress_is_reported_at_most_once_per_interval_plus_the_final_report(store):
    batch_id = _batch(store, 50)
    reports = []
    options = EngineOptions(**FAST, progress_interval_seconds=3600)
    asyncio.run(run_batch(store, batch_id, ScriptedHandler(), options, on_progress=reports.append))
    # the first report may come at once; with an hour's interval no other until the end
    assert 1 <= len(reports) <= 2
    assert reports[-1].view.progress_percent == 100.0 and reports[-1].view.state == "completed"


def test_an_empty_batch_completes_at_once(store):
    batch_id = store.create_batch(family="test", batch_type="t", job_configurations=[])
    assert _run(store, batch_id, ScriptedHandler()).status == BatchStatus.COMPLETED


def test_a_dead_runs_claims_are_taken_over_when_their_lease_runs_out(store):
    batch_id = _batch(store, 4)
    store.claim_jobs(batch_id, "dead-run", limit=2, lease_seconds=0.3)
    handler = ScriptedHandler()
    result = _run(store, batch_id, handler)
    assert result.status == BatchStatus.COMPLETED
    assert sorted(handler.submissions) == ["job-0000", "job-0001", "job-0002", "job-0003"]


def test_a_state_change_that_cannot_be_committed_stops_the_run_instead_of_being_lost(store):
    batch_id = _batch(store, 20)
    real = store.apply_job_changes
    calls = {"n": 0}

    def failing(changes):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(changes)

    store.apply_job_changes = failing
    with pytest.raises(RuntimeError, match="disk full"):
        _run(store, batch_id, ScriptedHandler(delay=0.002), concurrency=2)
    store.apply_job_changes = real
    # nothing is left claimed, and the next run finishes every job
    assert store.count_claimed_by_others(batch_id, "anyone") == 0
    assert _run(store, batch_id, ScriptedHandler()).status == BatchStatus.COMPLETED


def _set_status_behind_the_runs_back(store, job_id: int, status: JobStatus) -> None:
    """What an operator or another process does to a job: a direct write of its status."""
    import sqlalchemy as sa

    from batch_pipelines.store import schema

    with store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == job_id).values(status=status.value)
        )


def test_a_job_moved_by_someone_else_during_its_submission_keeps_their_status(store, caplog):
    batch_id = _batch(store, 6)
    target = store.list_jobs(batch_id)[2]

    def meddle(job):
        if job.id == target.id:
            _set_status_behind_the_runs_back(store, job.id, JobStatus.CANCELLED)

    result = _run(store, batch_id, ScriptedHandler(delay=0.002, on_submit=meddle), concurrency=2)
    assert store.get_job(target.id).status == JobStatus.CANCELLED
    assert result.counts == {"FINISHED": 5, "CANCELLED": 1}
    assert f"job {target.id} was changed by someone else" in caplog.text


def test_a_tracked_job_moved_by_someone_else_is_no_longer_tracked_and_the_run_ends(store, caplog):
    batch_id = _batch(store, 3)
    target = store.list_jobs(batch_id)[0]
    handler = ScriptedHandler(execution="async", polls_to_finish=50)
    real_track = handler.track

    async def track(jobs):
        if (
            any(j.id == target.id for j in jobs)
            and store.get_job(target.id).status != JobStatus.CANCELLED
        ):
            _set_status_behind_the_runs_back(store, target.id, JobStatus.CANCELLED)
        return await real_track(jobs)

    handler.track = track
    result = _run(store, batch_id, handler, concurrency=3)
    assert store.get_job(target.id).status == JobStatus.CANCELLED
    assert result.counts == {"FINISHED": 2, "CANCELLED": 1}
    assert f"job {target.id} was changed by someone else; no longer tracked" in caplog.text


class _OutOfOrder(ScriptedHandler):
    """A service that reports RUNNING, then QUEUED (going back), then FINISHED."""

    async def track(self, jobs):
        from batch_pipelines.engine.handlers import TrackOutcome

        out = {}
        for job in jobs:
            n = self.polls[job.id] = self.polls.get(job.id, 0) + 1
            status = [JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.FINISHED][min(n, 3) - 1]
            out[job.id] = TrackOutcome(status, status.value)
        return out


def test_a_service_answering_out_of_order_never_moves_a_job_backwards(store):
    batch_id = _batch(store, 3)
    result = _run(store, batch_id, _OutOfOrder(execution="async"))
    assert result.status == BatchStatus.COMPLETED
    for job in store.list_jobs(batch_id):
        assert [r["status"] for r in store.tracking_log(job.id)] == ["RUNNING", "FINISHED"]
