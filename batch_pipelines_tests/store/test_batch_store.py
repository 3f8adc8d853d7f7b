"""The store on SQLite and PostgreSQL: atomic creation, claims, compare-and-set changes,
resubmission history and reconciliation."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from batch_pipelines.core.errors import IllegalTransition, JobError, NotFound
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.store.batch_store import BatchStore, JobChange


def _batch(store: BatchStore, n: int = 3, **kw) -> int:
    return store.create_batch(
        family="test",
        batch_type="EDM Creation",
        job_configurations=[{"key": f"edm-{i}", "data": {"name": f"EDM_{i}"}} for i in range(n)],
        **kw,
    )


def _advance(store: BatchStore, job_id: int, *path: JobStatus) -> None:
    current = store.get_job(job_id).status
    for status in path:
        store.apply_job_changes([JobChange(job_id=job_id, expected=current, status=status)])
        current = status


def test_creating_a_batch_creates_one_initiated_job_per_configuration_with_its_own_request_id(
    store,
):
    batch_id = _batch(store, 4)
    jobs = store.list_jobs(batch_id)
    assert [j.key for j in jobs] == ["edm-0", "edm-1", "edm-2", "edm-3"]
    assert {j.status for j in jobs} == {JobStatus.INITIATED}
    assert len({j.request_id for j in jobs}) == 4
    assert jobs[0].configuration == {"name": "EDM_0"}
    assert store.get_batch(batch_id).status == BatchStatus.INITIATED


def test_a_batch_with_duplicate_keys_stores_nothing(store):
    with sa.create_engine(store.engine.url).connect() as conn:
        before = conn.execute(sa.text("select count(*) from batches")).scalar_one()
    with pytest.raises(Exception, match="duplicate"):
        store.create_batch(
            family="test", batch_type="x", job_configurations=[{"key": "a"}, {"key": "a"}]
        )
    with sa.create_engine(store.engine.url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from batches")).scalar_one() == before


def test_claiming_records_the_intent_and_never_hands_a_job_to_two_owners(store):
    batch_id = _batch(store, 5)
    first = store.claim_jobs(batch_id, "run-a", limit=3, lease_seconds=60)
    second = store.claim_jobs(batch_id, "run-b", limit=10, lease_seconds=60)
    assert len(first) == 3 and len(second) == 2
    assert not {j.id for j in first} & {j.id for j in second}
    assert all(j.submit_requested_at is not None and j.submit_attempts == 1 for j in first + second)
    assert store.claim_jobs(batch_id, "run-c", limit=10, lease_seconds=60) == []
    assert store.count_claimed_by_others(batch_id, "run-c") == 5


def test_an_expired_claim_can_be_taken_over_by_another_run(store):
    batch_id = _batch(store, 2)
    store.claim_jobs(batch_id, "dead-run", limit=2, lease_seconds=-1)
    taken = store.claim_jobs(batch_id, "new-run", limit=2, lease_seconds=60)
    assert len(taken) == 2
    assert all(j.submit_attempts == 2 for j in taken)


def test_concurrent_claimers_split_the_jobs_without_overlap(store):
    batch_id = _batch(store, 200)
    results: dict[str, list[int]] = {}

    def claim(owner: str) -> None:
        other = (
            BatchStore(engine=sa.create_engine(store.engine.url))
            if store.dialect == "postgresql"
            else store
        )
        got: list[int] = []
        while batch := other.claim_jobs(batch_id, owner, limit=7, lease_seconds=60):
            got.extend(j.id for j in batch)
        results[owner] = got

    threads = [threading.Thread(target=claim, args=(f"owner-{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    claimed = [i for ids in results.values() for i in ids]
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_a_change_applies_only_while_the_job_is_in_the_expected_status(store):
    batch_id = _batch(store, 1)
    job = store.list_jobs(batch_id)[0]
    store.apply_job_changes(
        [JobChange(job.id, JobStatus.INITIATED, JobStatus.SUBMITTED, workflow_id="wf-1")]
    )
    store.apply_job_changes(
        [JobChange(job.id, JobStatus.SUBMITTED, JobStatus.RUNNING, service_status="RUNNING")]
    )
    # A stale tracker that still thinks the job is SUBMITTED must not move it back or sideways,
    # and hears that its change was not applied (nor logged), while the others in the batch are.
    other = store.list_jobs(_batch(store, 1))[0]
    lost = store.apply_job_changes(
        [
            JobChange(job.id, JobStatus.SUBMITTED, JobStatus.QUEUED, service_status="QUEUED"),
            JobChange(other.id, JobStatus.INITIATED, JobStatus.SUBMITTED, workflow_id="wf-2"),
        ]
    )
    assert lost == {job.id}
    after = store.get_job(job.id)
    assert after.status == JobStatus.RUNNING and after.workflow_id == "wf-1"
    assert after.submitted_at is not None
    assert [r["status"] for r in store.tracking_log(job.id)] == ["RUNNING"]
    assert store.get_job(other.id).status == JobStatus.SUBMITTED


def test_an_illegal_change_raises_before_anything_is_written(store):
    batch_id = _batch(store, 2)
    a, b = store.list_jobs(batch_id)
    with pytest.raises(IllegalTransition):
        store.apply_job_changes(
            [
                JobChange(a.id, JobStatus.INITIATED, JobStatus.SUBMITTED),
                JobChange(b.id, JobStatus.FINISHED, JobStatus.RUNNING),
            ]
        )
    assert store.get_job(a.id).status == JobStatus.INITIATED


def test_tracking_changes_are_logged_per_job(store):
    batch_id = _batch(store, 1)
    job = store.list_jobs(batch_id)[0]
    _advance(store, job.id, JobStatus.SUBMITTED)
    store.apply_job_changes(
        [
            JobChange(
                job.id,
                JobStatus.SUBMITTED,
                JobStatus.FINISHED,
                service_status="FINISHED",
                progress=100.0,
            )
        ]
    )
    log = store.tracking_log(job.id)
    assert [(r["status"], r["progress"]) for r in log] == [("FINISHED", 100.0)]
    assert store.get_job(job.id).finished_at is not None


def test_reconciliation_is_stored_and_logged(store):
    batch_id = _batch(store, 2)
    a, b = store.list_jobs(batch_id)
    _advance(store, a.id, JobStatus.SUBMITTED, JobStatus.FINISHED)
    _advance(store, b.id, JobStatus.SUBMITTED, JobStatus.FAILED)
    result = store.reconcile_batch(batch_id)
    assert result.status == BatchStatus.FAILED
    assert result.summary.failed_job_ids == [b.id]
    assert store.get_batch(batch_id).status == BatchStatus.FAILED
    assert store.recon_log(batch_id)[-1]["status"] == "FAILED"


def test_resubmitting_keeps_history_and_reopens_the_batch(store):
    batch_id = _batch(store, 2)
    a, b = store.list_jobs(batch_id)
    _advance(store, a.id, JobStatus.SUBMITTED, JobStatus.FINISHED)
    _advance(store, b.id, JobStatus.SUBMITTED, JobStatus.FAILED)
    store.reconcile_batch(batch_id)
    (new_id,) = store.resubmit_jobs([b.id])
    old, new = store.get_job(b.id), store.get_job(new_id)
    assert old.skipped and old.status == JobStatus.FAILED and f"job {new_id}" in old.skipped_reason
    assert new.parent_job_id == b.id and new.status == JobStatus.INITIATED
    assert new.request_id != old.request_id
    assert store.get_batch(batch_id).status == BatchStatus.ACTIVE
    _advance(store, new_id, JobStatus.SUBMITTED, JobStatus.FINISHED)
    assert store.reconcile_batch(batch_id).status == BatchStatus.COMPLETED


def test_resubmitting_with_a_replacement_configuration_links_both_ways(store):
    batch_id = _batch(store, 1)
    (job,) = store.list_jobs(batch_id)
    _advance(store, job.id, JobStatus.SUBMITTED, JobStatus.FAILED)
    with pytest.raises(JobError, match="override reason"):
        store.resubmit_jobs([job.id], configuration_data={"name": "EDM_FIXED"})
    (new_id,) = store.resubmit_jobs(
        [job.id], configuration_data={"name": "EDM_FIXED"}, override_reason="typo"
    )
    old_cfg, new_cfg = store.list_job_configurations(batch_id)
    assert old_cfg.skipped and old_cfg.overridden_by_job_configuration_id == new_cfg.id
    assert new_cfg.parent_job_configuration_id == old_cfg.id and new_cfg.override_reason == "typo"
    assert store.get_job(new_id).configuration == {"name": "EDM_FIXED"}


def test_only_failed_errored_or_cancelled_jobs_can_be_resubmitted(store):
    batch_id = _batch(store, 1)
    (job,) = store.list_jobs(batch_id)
    with pytest.raises(JobError, match="INITIATED"):
        store.resubmit_jobs([job.id])
    with pytest.raises(NotFound):
        store.resubmit_jobs([999_999])


def test_illegal_batch_transitions_raise(store):
    batch_id = _batch(store, 1)
    with pytest.raises(IllegalTransition):
        store.set_batch_status(batch_id, BatchStatus.PAUSED)
    store.set_batch_status(batch_id, BatchStatus.ACTIVE)
    assert store.set_batch_status(batch_id, BatchStatus.PAUSED).status == BatchStatus.PAUSED


def test_cancelling_unsubmitted_jobs_leaves_claimed_ones_alone(store):
    batch_id = _batch(store, 3)
    store.claim_jobs(batch_id, "live-run", limit=1, lease_seconds=60)
    assert store.cancel_unsubmitted_jobs(batch_id) == 2
    assert store.job_status_counts(batch_id) == {"CANCELLED": 2, "INITIATED": 1}


def test_a_run_never_claims_again_the_jobs_it_already_holds(store):
    batch_id = _batch(store, 3)
    assert len(store.claim_jobs(batch_id, "run-a", limit=2, lease_seconds=60)) == 2
    again = store.claim_jobs(batch_id, "run-a", limit=10, lease_seconds=60)
    assert [j.key for j in again] == ["edm-2"]


def test_registering_a_cycle_archives_the_active_one_and_only_the_active_one_takes_configurations(
    store,
):
    from batch_pipelines.core.errors import BatchError, CycleNotActive

    store.register_cycle("202503_Quarterly")
    store.save_configuration(
        cycle_name="202503_Quarterly", family="risk_modeling", name="a.xlsx", content={"v": 1}
    )
    store.register_cycle("202506_Quarterly")
    assert store.get_cycle("202503_Quarterly").status == "ARCHIVED"
    assert store.active_cycle().name == "202506_Quarterly"
    with pytest.raises(CycleNotActive, match="not active"):
        store.save_configuration(
            cycle_name="202503_Quarterly", family="risk_modeling", name="b", content={}
        )
    with pytest.raises(BatchError, match="already exists"):
        store.register_cycle("202506_Quarterly")


def test_a_configuration_can_be_replaced_until_batches_exist_for_it(store):
    from batch_pipelines.core.errors import BatchError

    store.register_cycle("C1")
    first = store.save_configuration(
        cycle_name="C1", family="risk_modeling", name="a", content={"v": 1}
    )
    second = store.save_configuration(
        cycle_name="C1", family="risk_modeling", name="a", content={"v": 2}
    )
    assert second.id == first.id and second.content == {"v": 2}
    store.create_batch(
        family="risk_modeling", batch_type="x", configuration_id=first.id, job_configurations=[]
    )
    with pytest.raises(BatchError, match="cannot be replaced"):
        store.save_configuration(
            cycle_name="C1", family="risk_modeling", name="a", content={"v": 3}
        )
    assert store.configuration_for_cycle("C1", "risk_modeling").content == {"v": 2}


def test_two_runs_of_one_partition_find_the_same_batch(store):
    first = store.find_or_create_batch(
        family="f", batch_type="t", partition_key="P1", job_configurations=[{"key": "a"}]
    )
    # a racing creator loses on the unique constraint and reads the winner's batch
    from batch_pipelines.store.batch_store import BatchStore

    original = BatchStore.find_batches
    calls = {"n": 0}

    def stale_then_real(self, **kw):
        calls["n"] += 1
        return [] if calls["n"] == 1 else original(self, **kw)

    BatchStore.find_batches = stale_then_real
    try:
        second = store.find_or_create_batch(
            family="f", batch_type="t", partition_key="P1", job_configurations=[{"key": "a"}]
        )
    finally:
        BatchStore.find_batches = original
    assert second == first
    assert len(store.find_batches(family="f", batch_type="t", partition_key="P1")) == 1


def test_a_job_held_by_a_live_run_or_already_resubmitted_cannot_be_resubmitted_again(store):
    batch_id = _batch(store, 2)
    a, b = store.list_jobs(batch_id)
    store.apply_job_changes(
        [JobChange(a.id, JobStatus.INITIATED, JobStatus.ERROR, last_error="timeout")]
    )
    store.claim_jobs(
        batch_id,
        "live-run",
        limit=5,
        lease_seconds=60,
        errored_before=a.updated_at.replace(year=2100),
    )
    with pytest.raises(JobError, match="another run"):
        store.resubmit_jobs([a.id])
    store.release_claims("live-run")
    (child,) = store.resubmit_jobs([a.id])
    with pytest.raises(JobError):
        store.resubmit_jobs([a.id])
    assert store.get_job(child).parent_job_id == a.id


def test_concurrent_claims_of_one_event_key_let_exactly_one_through(store):
    batch_id = _batch(store, 1)
    results: list[bool] = []
    start = threading.Barrier(6)

    def claim() -> None:
        start.wait()
        results.append(store.add_batch_event_once(batch_id, "claimed", key="FAILED@t1"))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert store.add_batch_event_once(batch_id, "claimed", key="FAILED@t2") is True
    assert [e["data"]["key"] for e in store.batch_events(batch_id)] == ["FAILED@t1", "FAILED@t2"]
