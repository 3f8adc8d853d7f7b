"""Batch contexts keep the seed's JSON shape and are found by user, tenant and feature type."""

from __future__ import annotations

from batch_pipelines.configured_batches.contexts import (
    BATCH,
    USER_RESULT,
    ContextStore,
    ContextWrite,
    batch_context,
    merge_batch_contexts,
    progress,
)
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE, load_job_configuration
from batch_pipelines.configured_batches.preferences import Preference
from batch_pipelines.configured_batches.repositories import CategoryRepository, UserRepository
from batch_pipelines.configured_batches.runner import GroupMembers, run_batch
from batch_pipelines.resources import ModelsResource
from batch_pipelines.store.batch_store import BatchStore

from .batch_data import ACTIVE_USERS, GHOST_USER, INACTIVE_USER, seed

SEED_KEYS = {"metadata", "items", "progress", "validation"}


def test_a_user_batch_context_has_exactly_the_seeds_shape():
    ctx = batch_context(
        metadata={"job_id": "j"},
        data_source_type="users",
        valid=["u1", "u2"],
        invalid=["x"],
        succeeded=1,
        failed=1,
        total=2,
        validation={"total": 3, "valid": 2, "invalid": 1, "chunks": 1},
    )
    results = ctx["results"]
    assert set(ctx) == {"results"} and set(results) == SEED_KEYS
    assert results["items"] == {"valid_users": ["u1", "u2"], "invalid_users": ["x"]}
    assert results["progress"] == {
        "processed": 2,
        "succeeded": 1,
        "failed": 1,
        "total": 2,
        "percentage": 100,
    }
    assert results["validation"] == {"total": 3, "valid": 2, "invalid": 1}


def test_a_category_batch_context_carries_its_user_references():
    ctx = batch_context(
        metadata={},
        data_source_type="categories",
        valid=["cat1"],
        invalid=[],
        succeeded=1,
        failed=0,
        total=1,
        validation={"total": 8, "valid": 6, "invalid": 2},
        category_type="product_category",
        user_references={"total": 8, "valid": 6, "invalid": 2},
    )
    meta = ctx["results"]["metadata"]
    assert meta["data_source_type"] == "categories" and meta["category_type"] == "product_category"
    assert meta["user_references"] == {"total": 8, "valid": 6, "invalid": 2}
    assert ctx["results"]["items"] == {"valid_categories": ["cat1"], "invalid_categories": []}


def test_progress_percentage_counts_what_was_processed():
    assert progress(3, 1, 8)["percentage"] == 50
    assert progress(0, 0, 0)["percentage"] == 100


def test_contexts_are_replaced_in_place_and_found_by_literal_prefix(store):
    contexts = ContextStore(store.engine)
    contexts.put_many(
        [
            ContextWrite(USER_RESULT, "user_1/a", {"v": 1}),
            ContextWrite(USER_RESULT, "userX1/a", {"v": 2}),
        ]
    )
    contexts.put(USER_RESULT, "user_1/a", {"v": 3})
    assert contexts.get(USER_RESULT, "user_1/a") == {"v": 3}
    # "_" is not a wildcard: user_1 does not match userX1.
    assert [r.key for r in contexts.find(USER_RESULT, "user_1/")] == ["user_1/a"]
    assert contexts.get(BATCH, "user_1/a") is None


def test_a_category_batch_run_stores_contexts_for_the_batch_each_request_user_tenant_and_recipient(
    store,
):
    seed(store.engine)
    jobs = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}
    result = run_batch(
        store,
        jobs["audience_trend_analysis"],
        tick="2026-12-01T06:00+00:00",
        client_factory=ModelsResource().client,
        users=UserRepository(store.engine),
        categories=CategoryRepository(store.engine),
    )
    contexts = ContextStore(store.engine)
    stored = contexts.get(BATCH, result.batch_key)
    assert stored == result.context and set(stored["results"]) == SEED_KEYS
    # 4 items reference u1..u5 and one ghost user, which is invalid and dropped.
    assert stored["results"]["metadata"]["user_references"] == {
        "total": 6,
        "valid": 5,
        "invalid": 1,
    }
    dropped = [e for e in store.batch_events(result.batch_id) if e["level"] == "WARNING"]
    assert dropped[0]["data"]["invalid_users"] == [GHOST_USER]
    refs = contexts.batch_references(ACTIVE_USERS[0])
    assert refs[0]["batch_key"] == result.batch_key and refs[0]["summary"]["status"] == "completed"


def test_a_user_batch_with_explicit_ids_drops_and_records_unknown_and_inactive_users(store):
    seed(store.engine)
    job = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}["user_welcome_notes"]
    job = job.model_copy(
        update={"user_ids": [ACTIVE_USERS[0], "nobody", INACTIVE_USER, ACTIVE_USERS[0]]}
    )
    result = run_batch(
        store,
        job,
        tick="t1",
        client_factory=ModelsResource().client,
        users=UserRepository(store.engine),
        categories=CategoryRepository(store.engine),
    )
    results = result.context["results"]
    assert results["items"] == {
        "valid_users": [ACTIVE_USERS[0]],
        "invalid_users": ["nobody", INACTIVE_USER],
    }
    assert results["validation"] == {"total": 3, "valid": 1, "invalid": 2}
    assert results["progress"]["total"] == 1


def test_a_batchs_user_results_come_failures_first_capped_with_their_total():
    from batch_pipelines.configured_batches.runner import failures_first

    statuses = {"u1": "succeeded", "u2": "failed", "u3": "succeeded", "u4": "failed"}
    writes = [
        ContextWrite(USER_RESULT, f"{uid}/of-batch-1", {"user_id": uid, "status": s}, 1)
        for uid, s in statuses.items()
    ]
    rows, total = failures_first(writes, limit=3)
    assert total == 4
    assert [(r.data["user_id"], r.data["status"]) for r in rows] == [
        ("u2", "failed"),
        ("u4", "failed"),
        ("u1", "succeeded"),
    ]


def _users_context(valid, invalid, succeeded, total, **metadata):
    return batch_context(
        metadata={"job_id": "j", **metadata},
        data_source_type="users",
        valid=valid,
        invalid=invalid,
        succeeded=succeeded,
        failed=total - succeeded,
        total=total,
        validation={
            "total": len(valid) + len(invalid),
            "valid": len(valid),
            "invalid": len(invalid),
        },
    )


def test_a_new_generation_merges_into_the_stored_context_instead_of_replacing_it():
    first = merge_batch_contexts(
        None,
        _users_context(["u1", "u2"], ["x"], 1, 2, tick="t", distribution={"recipients": ["r1"]}),
    )
    assert first["results"]["metadata"]["generation"] == 1
    second = merge_batch_contexts(
        first,
        _users_context(
            ["u2", "x", "u3"], ["u4"], 3, 3, distribution={"invalid_recipients": ["r9"]}
        ),
    )
    r = second["results"]
    assert set(r) == SEED_KEYS
    # Metadata merged key by key (nested too), the new generation's values winning.
    assert r["metadata"]["tick"] == "t" and r["metadata"]["generation"] == 2
    assert r["metadata"]["distribution"] == {"recipients": ["r1"], "invalid_recipients": ["r9"]}
    # u1 kept from the first generation; x now valid; u4 new and invalid.
    assert r["items"] == {"valid_users": ["u1", "u2", "x", "u3"], "invalid_users": ["u4"]}
    assert r["validation"] == {"total": 5, "valid": 4, "invalid": 1}
    assert r["progress"] == progress(3, 0, 3)
    third = merge_batch_contexts(second, _users_context(["u4"], ["u1"], 1, 1))
    assert third["results"]["items"] == {
        "valid_users": ["u2", "x", "u3", "u4"],
        "invalid_users": ["u1"],
    }
    assert third["results"]["metadata"]["generation"] == 3


def test_a_category_contexts_generation_keeps_its_categories_and_takes_the_latest_reference_check():
    def categories(valid, invalid, refs):
        return batch_context(
            metadata={"job_id": "c"},
            data_source_type="categories",
            valid=valid,
            invalid=invalid,
            succeeded=1,
            failed=0,
            total=1,
            validation=refs,
            category_type="a,b",
            user_references=refs,
        )

    first = merge_batch_contexts(
        None, categories(["a"], ["b"], {"total": 4, "valid": 3, "invalid": 1})
    )
    second = merge_batch_contexts(
        first, categories(["b"], [], {"total": 2, "valid": 2, "invalid": 0})
    )
    r = second["results"]
    assert r["items"] == {"valid_categories": ["a", "b"], "invalid_categories": []}
    assert r["validation"] == {"total": 2, "valid": 2, "invalid": 0}
    assert r["metadata"]["user_references"] == {"total": 2, "valid": 2, "invalid": 0}


def test_a_rerun_of_a_groups_tick_with_changed_members_merges_into_its_context(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    seed(store.engine)
    job = next(
        j
        for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]
        if j.job_id == "personal_daily_digest"
    )
    key = "daily_digest|daily|*|09:00|UTC"

    def run(members):
        preferences = {
            uid: Preference.parse(
                {"tenant_id": "tenant_a", "user_id": uid, "feature_type": "daily_digest"},
                where="test",
            )
            for uid in members
        }
        return run_batch(
            store,
            job,
            tick="2026-12-01T09:00Z",
            client_factory=ModelsResource().client,
            users=UserRepository(store.engine),
            categories=CategoryRepository(store.engine),
            group=GroupMembers(key, preferences),
        )

    run(ACTIVE_USERS[:2])
    # user_0001 left the group and user_0003 joined before the tick was run again.
    again = run([ACTIVE_USERS[1], ACTIVE_USERS[2], INACTIVE_USER])
    assert again.sent_this_run == 1 and again.requests_total == 3
    stored = ContextStore(store.engine).get(BATCH, again.batch_key)["results"]
    assert stored == again.context["results"]
    assert stored["metadata"]["generation"] == 2
    assert stored["items"] == {
        "valid_users": ACTIVE_USERS[:3],
        "invalid_users": [INACTIVE_USER],
    }
    assert stored["progress"] == progress(3, 0, 3)
    store.dispose()
