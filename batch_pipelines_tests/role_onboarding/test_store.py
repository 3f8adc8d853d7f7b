"""The role batch store on SQLite and PostgreSQL: records, retry rounds, TTL, dashboards."""

from datetime import UTC, datetime, timedelta

import pytest

from batch_pipelines.core.errors import NotFound
from batch_pipelines.role_onboarding.store import BatchExpired, RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import new_batch_id, validate_submission

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _submission(company="acme", names=("Actuary", "Underwriter", "")):
    return validate_submission(company, [{"role_name": n} for n in names], created_by="me@acme.com")


def test_a_batch_is_stored_with_one_workflow_per_valid_role_and_its_skipped_roles(store):
    roles = RoleOnboardingStore(store)
    batch_id = new_batch_id()
    batch = roles.create_batch(batch_id, _submission(), now=NOW)
    assert (
        batch.batch_id == batch_id
        and batch.company_id == "acme"
        and batch.created_by == "me@acme.com"
    )
    assert batch.created_at == NOW and batch.expires_at == NOW + timedelta(hours=24)
    assert [w.partition_key for w in batch.current_workflows()] == [
        "acme/actuary",
        "acme/underwriter",
    ]
    assert batch.invalid_roles == [
        {"index": 2, "role_name": None, "field": "role_name", "reason": "is required"}
    ]
    assert roles.get_batch(batch_id, now=NOW) == batch


def test_a_retry_round_joins_the_batch_and_replaces_only_the_retried_roles(store):
    roles = RoleOnboardingStore(store)
    batch = roles.create_batch(new_batch_id(), _submission(), now=NOW)
    first, second = batch.current_workflows()
    new = roles.add_retry_round(
        batch.batch_id, [second.workflow_id], {"force_rerun": True}, now=NOW
    )
    assert [(w.round, w.retry_of, w.options["force_rerun"]) for w in new] == [
        (2, second.workflow_id, True)
    ]
    current = roles.get_batch(batch.batch_id, now=NOW).current_workflows()
    assert [w.workflow_id for w in current] == [first.workflow_id, new[0].workflow_id]
    with pytest.raises(NotFound, match="role-onboard-nope"):
        roles.add_retry_round(batch.batch_id, ["role-onboard-nope"], {}, now=NOW)


def test_an_expired_batch_is_deleted_on_read_and_says_it_expired_unlike_an_unknown_one(store):
    roles = RoleOnboardingStore(store)
    batch = roles.create_batch(new_batch_id(), _submission(), ttl=timedelta(hours=1), now=NOW)
    assert (
        roles.get_batch(batch.batch_id, now=NOW + timedelta(minutes=59)).batch_id == batch.batch_id
    )
    ids = [w.id for w in batch.workflows]
    with pytest.raises(BatchExpired, match="expired"):
        roles.get_batch(batch.batch_id, now=NOW + timedelta(hours=1))
    with pytest.raises(BatchExpired):  # still says so the next time
        roles.get_batch(batch.batch_id, now=NOW + timedelta(hours=2))
    assert not [w for w in roles.workflows_after(min(ids) - 1) if w.id in ids]
    with pytest.raises(NotFound) as unknown:
        roles.get_batch("batch-000000000000", now=NOW)
    assert not isinstance(unknown.value, BatchExpired)


def test_the_cleanup_deletes_only_expired_batches_and_the_company_list_skips_them(store):
    roles = RoleOnboardingStore(store)
    # Own company ids: the PostgreSQL database is shared by the session's tests.
    acme, globex = f"acme-{new_batch_id()}", f"globex-{new_batch_id()}"
    old = roles.create_batch(
        new_batch_id(), _submission(company=acme), ttl=timedelta(hours=1), now=NOW
    )
    fresh = roles.create_batch(
        new_batch_id(), _submission(company=acme), now=NOW + timedelta(minutes=30)
    )
    other = roles.create_batch(
        new_batch_id(), _submission(company=globex), ttl=timedelta(hours=1), now=NOW
    )
    newest = roles.create_batch(
        new_batch_id(), _submission(company=acme), now=NOW + timedelta(minutes=40)
    )
    later = NOW + timedelta(hours=2)
    listed = roles.list_batches(acme, now=later)
    assert [b.batch_id for b in listed] == [newest.batch_id, fresh.batch_id]
    # Each listed batch carries its own workflows, as reading it alone does.
    assert all(b.workflows for b in listed)
    assert listed == [
        roles.get_batch(newest.batch_id, now=later),
        roles.get_batch(fresh.batch_id, now=later),
    ]
    gone = roles.delete_expired(now=later)
    assert other.batch_id in gone and old.batch_id not in gone  # the listing already removed it
    assert fresh.batch_id not in gone
    with pytest.raises(BatchExpired):
        roles.get_batch(old.batch_id, now=later)
    with pytest.raises(BatchExpired):
        roles.get_batch(other.batch_id, now=later)
    assert roles.get_batch(fresh.batch_id, now=later).batch_id == fresh.batch_id


def test_the_sensor_cursor_reads_workflows_in_storage_order(store):
    roles = RoleOnboardingStore(store)
    a = roles.create_batch(new_batch_id(), _submission(), now=NOW)
    b = roles.create_batch(new_batch_id(), _submission(names=("Actuary",)), now=NOW)
    start = a.workflows[0].id - 1
    everything = roles.workflows_after(start)
    assert [w.batch_id for w in everything] == [a.batch_id, a.batch_id, b.batch_id]
    assert roles.workflows_after(everything[1].id) == everything[2:]
    assert roles.workflows_after(start, limit=1) == everything[:1]


def test_a_step_and_its_error_are_recorded_on_the_workflow(store):
    roles = RoleOnboardingStore(store)
    batch = roles.create_batch(new_batch_id(), _submission(), now=NOW)
    wf = batch.current_workflows()[0]
    roles.record_step(wf.workflow_id, "ai_assessment", error="ai_assessment: timeout")
    again = roles.get_batch(batch.batch_id, now=NOW).current_workflows()[0]
    assert (again.last_step, again.error) == ("ai_assessment", "ai_assessment: timeout")


def test_a_workflows_run_id_is_recorded_and_its_batch_gets_one_shared_ledger_batch(store):
    roles = RoleOnboardingStore(store)
    batch = roles.create_batch(new_batch_id(), _submission(), now=NOW)
    wf = batch.current_workflows()[0]
    assert roles.record_run(wf.workflow_id, "run-1").run_id == "run-1"
    assert roles.get_batch(batch.batch_id, now=NOW).current_workflows()[0].run_id == "run-1"
    assert roles.record_run("role-onboard-gone", "run-2") is None
    shared = store.get_batch(roles.ledger_batch_id(batch.batch_id))
    assert (shared.family, shared.partition_key) == ("role_onboarding", batch.batch_id)
    assert roles.ledger_batch_id(new_batch_id()) is None


def test_a_republished_dashboard_keeps_its_id(store):
    roles = RoleOnboardingStore(store)
    company = f"acme-{new_batch_id()}"
    key = f"{company}/actuary"
    kwargs = dict(
        company_id=company,
        role_name="Actuary",
        taxonomy_role_id="dr-1",
        taxonomy_role_name="Actuary",
    )
    first = roles.publish_dashboard(partition_key=key, record={"v": 1}, workflow="wf-1", **kwargs)
    second = roles.publish_dashboard(partition_key=key, record={"v": 2}, workflow="wf-2", **kwargs)
    assert first.dashboard_id == second.dashboard_id and second.record == {"v": 2}
    assert roles.dashboard_ids(company, [key, f"{company}/none"]) == {key: first.dashboard_id}
    assert roles.get_dashboard(f"{company}/none") is None
