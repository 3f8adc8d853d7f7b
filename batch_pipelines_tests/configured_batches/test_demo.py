"""The family's part of `make demo`: all 8 types end to end on the demo data."""

from __future__ import annotations

import dagster as dg

from batch_pipelines.configured_batches.contexts import BATCH, ContextStore
from batch_pipelines.configured_batches.demo import has_seed_shape, run_demo
from batch_pipelines.configured_batches.job_config import JobType
from batch_pipelines.store.batch_store import BatchStore


def test_the_demo_runs_every_type_and_each_writes_a_context_of_the_seeds_shape(tmp_path):
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_demo(lines.append, tmp_path, instance) == 0
    store = BatchStore(f"sqlite:///{tmp_path / 'batch_store.db'}")
    batches = store.find_batches(family="configured_batches")
    assert {b.batch_type for b in batches} == {t.value for t in JobType}
    contexts = ContextStore(store.engine)
    for batch in batches:
        context = contexts.get(BATCH, batch.partition_key)
        assert has_seed_shape(context, JobType(batch.batch_type).data_source), batch.partition_key
        assert context["results"]["progress"]["percentage"] == 100
    assert any("jobs status --user" in line for line in lines)


def test_a_context_missing_a_seed_field_is_not_taken_for_the_seeds_shape():
    good = {
        "results": {
            "metadata": {},
            "items": {"valid_users": [], "invalid_users": []},
            "progress": {
                "processed": 0,
                "succeeded": 0,
                "failed": 0,
                "total": 0,
                "percentage": 100,
            },
            "validation": {"total": 0, "valid": 0, "invalid": 0},
        }
    }
    assert has_seed_shape(good, "users")
    assert not has_seed_shape(good, "categories")
    assert not has_seed_shape(
        {"results": {k: v for k, v in good["results"].items() if k != "validation"}}, "users"
    )
