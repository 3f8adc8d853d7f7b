"""PhaseHandler against the model simulator: outputs, validation, and the cost ledger."""

from __future__ import annotations

import asyncio

import pytest

from batch_pipelines.core.costs import CostEntry, estimate_usage
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.document_ai.phase_handler import ItemOutcome, PhaseHandler
from batch_pipelines.document_ai.prompts import build_messages
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.models import ModelSimulator, split_sentences

TEXT = (
    "Marie Curie conducted pioneering research on radioactivity in Paris. "
    "She was the first scientist to win two Nobel Prizes. Her laboratory experiment on radium "
    "changed physics and chemistry. The University of Paris honoured her work in 1906. "
    "Later, her research shaped cancer treatment. Many students followed her experiments."
)

REQUEST_ID = "doc-7-1-summarize"


def _batch(store) -> int:
    """A batch for the ledger entries to belong to."""
    return store.create_batch(family="document_ai", batch_type="phase test", job_configurations=[])


def _run_item(
    sim: ModelSimulator, batch_id: int = 7, **handler_kw
) -> tuple[ItemOutcome, list[CostEntry]]:
    """Item 1 (TEXT) through one phase; returns the outcome and what ``spent`` collected."""
    handler_kw.setdefault("phase_name", "summarize")
    handler_kw.setdefault("task_type", "summarization")
    handler_kw.setdefault("model", "sim-large")
    spent: list[CostEntry] = []

    async def go() -> ItemOutcome:
        async with model_client(sim) as client:
            handler = PhaseHandler(client, **handler_kw)
            return await handler.run_item(
                item_id=1, content=TEXT, request_id=REQUEST_ID, batch_id=batch_id, spent=spent
            )

    return asyncio.run(go()), spent


def test_a_summary_is_derived_from_the_input_and_its_call_is_priced():
    sim = ModelSimulator()
    outcome, spent = _run_item(sim)

    assert outcome.ok and outcome.error is None
    summary = outcome.output
    assert summary and summary != TEXT
    assert set(split_sentences(summary)) <= set(split_sentences(TEXT))  # extractive
    assert outcome.attempts == 1 and outcome.score is None and outcome.latency_seconds >= 0

    (entry,) = outcome.entries
    assert spent == [entry]
    assert entry.call_key == f"{REQUEST_ID}:call:1"
    assert (entry.batch_id, entry.phase, entry.item_id, entry.model, entry.kind) == (
        7,
        "summarize",
        "1",
        "sim-large",
        "call",
    )
    stats = sim.stats()
    assert stats["billed_calls"] == 1
    assert not entry.usage.estimated
    assert entry.usage.prompt_tokens == stats["prompt_tokens_total"]
    assert entry.usage.completion_tokens == stats["completion_tokens_total"]
    assert outcome.cost == entry.cost > 0


def test_missing_usage_is_estimated_and_marked():
    sim = ModelSimulator(omit_usage_rate=1.0)
    outcome, (entry,) = _run_item(sim)
    assert outcome.ok
    prompt_text = "\n".join(m["content"] for m in build_messages("summarization", TEXT))
    assert entry.usage == estimate_usage(prompt_text, outcome.output)
    assert entry.usage.estimated and entry.cost > 0


def test_validation_scores_the_output_and_bills_the_validator():
    sim = ModelSimulator()
    outcome, spent = _run_item(sim, validation_enabled=True, min_score=10)
    assert outcome.ok
    assert outcome.score == 10 and outcome.attempts == 1
    assert [(e.call_key.removeprefix(REQUEST_ID), e.kind, e.model) for e in spent] == [
        (":call:1", "call", "sim-large"),
        (":validation:1", "validation", "sim-validator"),
    ]
    assert outcome.cost == sum(e.cost for e in spent)


def test_a_score_below_minimum_is_retried_then_fails_with_the_score():
    # The simulator's validator scores a one-word category by word overlap with the input:
    # "science" is not a word of TEXT, so it scores 2, every time.
    sim = ModelSimulator()
    outcome, spent = _run_item(
        sim, phase_name="categorization", task_type="categorize", model="sim-small",
        validation_enabled=True, min_score=7, max_validation_attempts=3,
    )  # fmt: skip
    assert not outcome.ok
    assert outcome.error == "validation score 2 below minimum 7"
    assert outcome.output == "science"
    assert outcome.score == 2 and outcome.attempts == 3
    assert [e.call_key.removeprefix(REQUEST_ID) for e in spent] == [
        ":call:1", ":validation:1", ":call:2", ":validation:2", ":call:3", ":validation:3",
    ]  # fmt: skip
    assert [e.kind for e in spent] == [
        "call",
        "validation",
        "retry",
        "validation",
        "retry",
        "validation",
    ]
    assert sim.stats()["billed_calls"] == 6  # each retry is a new, billed call


def test_embedding_generation_embeds_the_content():
    sim = ModelSimulator()
    outcome, (entry,) = _run_item(
        sim, phase_name="embed", task_type="embedding_generation", model="sim-embed",
        validation_enabled=True,  # vectors are not validated
    )  # fmt: skip
    assert outcome.ok
    vector = outcome.output
    assert len(vector) == 64 and all(isinstance(x, float) for x in vector)
    assert outcome.score is None
    assert (
        entry.model == "sim-embed" and entry.usage.completion_tokens == 0 and entry.kind == "call"
    )
    assert sim.stats()["billed_calls"] == 1


def test_redoing_an_item_replays_its_calls_and_adds_nothing_to_the_ledger(store):
    sim = ModelSimulator()
    batch_id = _batch(store)
    kw = {
        "validation_enabled": True,
        "phase_name": "categorization",
        "task_type": "categorize",
        "model": "sim-small",
    }
    first, entries = _run_item(sim, batch_id, **kw)
    assert store.record_cost_entries(entries) == len(entries) == 6
    billed = sim.stats()["billed_calls"]

    # A resumed run redoes the item: same request id, so same keys, so replays.
    again, replayed = _run_item(sim, batch_id, **kw)
    stats = sim.stats()
    assert stats["billed_calls"] == billed and stats["replays"] == 6
    assert replayed == entries and again.output == first.output
    assert store.record_cost_entries(replayed) == 0
    assert store.cost_totals(batch_id).calls == 6


def test_the_cost_of_earlier_calls_is_kept_when_a_later_call_fails():
    sim = ModelSimulator()
    spent: list[CostEntry] = []

    async def go():
        async with model_client(sim) as client:
            handler = PhaseHandler(
                client,
                phase_name="s",
                task_type="summarization",
                model="sim-large",
                validation_enabled=True,
            )
            real_chat = client.chat

            async def chat(messages, *, model, **kw):
                if model == "sim-validator":
                    raise RuntimeError("validator down")
                return await real_chat(messages, model=model, **kw)

            client.chat = chat
            await handler.run_item(
                item_id=1, content=TEXT, request_id=REQUEST_ID, batch_id=7, spent=spent
            )

    with pytest.raises(RuntimeError, match="validator down"):
        asyncio.run(go())
    assert [e.kind for e in spent] == ["call"]  # the billed work call is still known


def test_an_unpriced_model_is_refused_up_front():
    with pytest.raises(ConfigurationError, match="no price configured for model 'mystery'"):
        PhaseHandler(None, phase_name="p", task_type="chat", model="mystery")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'judge'"):
        PhaseHandler(
            None, phase_name="p", task_type="chat", model="sim-small",  # type: ignore[arg-type]
            validation_enabled=True, validator_model="judge",
        )  # fmt: skip
