"""The cost ledger in the store: one row per call_key, totals summed over the rows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batch_pipelines.core.costs import CostEntry, Usage, summarize


def _batch(store) -> int:
    return store.create_batch(family="document_ai", batch_type="ledger test", job_configurations=[])


def _entry(
    batch_id: int,
    key: str,
    *,
    phase="summarization",
    item="1",
    kind="call",
    pt=1000,
    ct=500,
    model="sim-large",
    estimated=False,
):
    # Keys are prefixed with the batch id: the PostgreSQL database is shared by the session.
    return CostEntry.priced(
        call_key=f"b{batch_id}:{key}",
        batch_id=batch_id,
        phase=phase,
        item_id=item,
        model=model,
        usage=Usage(pt, ct, estimated),
        kind=kind,
    )


def test_a_duplicate_call_key_never_bills_twice(store):
    batch_id = _batch(store)
    first = [_entry(batch_id, "1:call:1"), _entry(batch_id, "2:call:1", item="2")]
    assert store.record_cost_entries(first) == 2
    # A resumed run records the same calls again, plus one new: only the new one counts.
    again = [*first, _entry(batch_id, "3:call:1", item="3")]
    assert store.record_cost_entries(again) == 1
    assert store.record_cost_entries(again) == 0
    assert store.record_cost_entries([]) == 0

    totals = store.cost_totals(batch_id)
    assert totals.calls == 3
    # sim-large: 1000 prompt tokens at 0.0025/1k + 500 completion at 0.01/1k = 0.0075 each.
    assert totals.total_cost == Decimal("0.0225")
    assert totals.prompt_tokens == 3000 and totals.completion_tokens == 1500


def test_the_same_key_twice_with_different_content_in_one_write_is_refused(store):
    batch_id = _batch(store)
    with pytest.raises(ValueError, match="recorded twice"):
        store.record_cost_entries([_entry(batch_id, "k"), _entry(batch_id, "k", pt=1)])
    assert store.cost_totals(batch_id).calls == 0  # nothing half-written


def test_totals_by_phase_item_and_kind_are_sums_over_the_ledger(store):
    batch_id = _batch(store)
    other = _batch(store)
    entries = [
        _entry(batch_id, "1:clean", phase="ocr_cleanup", item="1", model="sim-small"),
        _entry(batch_id, "1:sum:1", phase="summarization", item="1"),
        _entry(batch_id, "1:sum:2", phase="summarization", item="1", kind="retry"),
        _entry(
            batch_id,
            "1:val:1",
            phase="summarization",
            item="1",
            kind="validation",
            model="sim-validator",
        ),
        _entry(
            batch_id,
            "2:clean",
            phase="ocr_cleanup",
            item="2",
            model="sim-small",
            estimated=True,
            pt=7,
            ct=3,
        ),
        _entry(batch_id, "batch-level", phase=None, item=None, model="sim-embed", ct=0),
    ]
    assert store.record_cost_entries(entries) == len(entries)
    store.record_cost_entries([_entry(other, "1:sum:1")])  # another batch's money stays there

    totals = store.cost_totals(batch_id)
    assert totals == summarize(entries)
    assert totals.calls == 6 and totals.estimated_calls == 1
    assert sum(totals.by_phase.values()) == totals.total_cost
    assert sum(totals.by_item.values()) == totals.total_cost
    assert set(totals.by_phase) == {"ocr_cleanup", "summarization", "(none)"}
    assert set(totals.by_item) == {"1", "2", "(none)"}
    assert totals.by_kind["retry"] == Decimal("0.0075")
    # One phase's spend, summed by the database (a phase asset's standard cost and tokens).
    cost, tokens = store.ledger_total(batch_id, phase="summarization")
    assert cost == totals.by_phase["summarization"]
    assert tokens == sum(
        e.usage.prompt_tokens + e.usage.completion_tokens
        for e in entries
        if e.phase == "summarization"
    )
    assert store.ledger_total(batch_id, phase="no_such_phase") == (Decimal(0), 0)
    assert totals.by_phase["summarization"] == sum(
        (e.cost for e in entries if e.phase == "summarization"), Decimal(0)
    )

    rebuilt = store.list_cost_entries(batch_id)
    assert [e.call_key for e in rebuilt] == [e.call_key for e in entries]
    assert rebuilt == entries  # round-trips exactly, Decimal cost included
    assert store.cost_totals(other).calls == 1


def test_the_database_sum_of_a_ledger_equals_the_entry_by_entry_sum_to_the_last_quantum(store):
    import random

    rng = random.Random(7)
    batch_id = _batch(store)
    assert store.ledger_total(batch_id) == (Decimal(0), 0)
    # Odd token counts give costs with all eight decimals in use; floats summed naively
    # would drift from the exact total over a few thousand entries.
    entries = [
        _entry(
            batch_id,
            f"{i}:call",
            item=str(i),
            pt=rng.randint(1, 5000),
            ct=rng.randint(0, 3000),
            model=rng.choice(["sim-large", "sim-small"]),
        )
        for i in range(3000)
    ]
    store.record_cost_entries(entries)
    exact = store.cost_totals(batch_id)
    assert store.ledger_total(batch_id) == (exact.total_cost, exact.total_tokens)
    assert store.ledger_total(_batch(store)) == (Decimal(0), 0)


def test_the_per_item_database_sums_equal_the_entry_by_entry_sums(store):
    import random

    from batch_pipelines.document_ai.store import DocumentJobStore

    rng = random.Random(11)
    batch_id = _batch(store)
    entries = [
        _entry(
            batch_id,
            f"{i}:call",
            item="0" if i % 100 else str(i // 100 % 2 + 1),
            pt=rng.randint(1, 5000),
            ct=rng.randint(0, 3000),
        )
        for i in range(6000)
    ]
    store.record_cost_entries(entries)
    exact = store.cost_totals(batch_id).by_item
    assert DocumentJobStore(store).cost_by_item(batch_id, [0, 1, 2]) == {
        int(k): exact[k] for k in ("0", "1", "2")
    }
