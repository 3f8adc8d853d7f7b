"""PhaseHandler against the model simulator: outputs, validation, and the cost ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from batch_pipelines.core.costs import CostEntry, estimate_usage
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.document_ai.phase_handler import PhaseHandler
from batch_pipelines.document_ai.prompts import build_messages
from batch_pipelines.engine.executor import EngineOptions, run_batch
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.models import ModelSimulator, split_sentences

TEXT = (
    "Marie Curie conducted pioneering research on radioactivity in Paris. "
    "She was the first scientist to win two Nobel Prizes. Her laboratory experiment on radium "
    "changed physics and chemistry. The University of Paris honoured her work in 1906. "
    "Later, her research shaped cancer treatment. Many students followed her experiments."
)

FAST = EngineOptions(concurrency=8, poll_interval_seconds=0.02, control_check_seconds=0.05)


def _jobs(store, contents: list[str]) -> tuple[int, list]:
    batch_id = store.create_batch(
        family="document_ai",
        batch_type="phase test",
        job_configurations=[
            {"key": f"item-{i}", "data": {"item_id": i, "content": text}}
            for i, text in enumerate(contents, start=1)
        ],
    )
    return batch_id, store.list_jobs(batch_id)


def _ledger(store):
    async def on_cost(entries: list[CostEntry]) -> None:
        await asyncio.to_thread(store.record_cost_entries, entries)

    return on_cost


def _submit(sim: ModelSimulator, job, **handler_kw):
    """Submit one job; returns the outcome and the entries handed to on_cost."""
    recorded: list[list[CostEntry]] = []
    handler_kw.setdefault("phase_name", "summarize")
    handler_kw.setdefault("task_type", "summarization")
    handler_kw.setdefault("model", "sim-large")

    async def go():
        async with model_client(sim) as client:
            handler = PhaseHandler(client, on_cost=recorded.append, **handler_kw)
            return await handler.submit(job)

    outcome = asyncio.run(go())
    return outcome, [e for batch in recorded for e in batch]


def test_a_summary_is_derived_from_the_input_and_its_call_is_priced(store):
    sim = ModelSimulator()
    batch_id, (job,) = _jobs(store, [TEXT])
    outcome, entries = _submit(sim, job)

    assert outcome.status == JobStatus.FINISHED and outcome.error is None
    response = outcome.response
    summary = response["output"]
    assert summary and summary != TEXT
    assert set(split_sentences(summary)) <= set(split_sentences(TEXT))  # extractive
    assert response["attempts"] == 1 and response["score"] is None
    assert response["model"] == "sim-large" and response["latency_seconds"] >= 0
    assert outcome.request == {
        "phase": "summarize",
        "task_type": "summarization",
        "model": "sim-large",
        "item_id": 1,
    }

    (entry,) = entries
    assert entry.call_key == f"{job.request_id}:call:1"
    assert (entry.batch_id, entry.phase, entry.item_id, entry.model, entry.kind) == (
        batch_id,
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
    assert Decimal(response["cost"]) == entry.cost > 0


def test_missing_usage_is_estimated_and_marked(store):
    sim = ModelSimulator(omit_usage_rate=1.0)
    _, (job,) = _jobs(store, [TEXT])
    outcome, (entry,) = _submit(sim, job)
    assert outcome.status == JobStatus.FINISHED
    prompt_text = "\n".join(m["content"] for m in build_messages("summarization", TEXT))
    assert entry.usage == estimate_usage(prompt_text, outcome.response["output"])
    assert entry.usage.estimated and entry.cost > 0


def test_validation_scores_the_output_and_bills_the_validator(store):
    sim = ModelSimulator()
    _, (job,) = _jobs(store, [TEXT])
    outcome, entries = _submit(sim, job, validation_enabled=True, min_score=10)
    assert outcome.status == JobStatus.FINISHED
    assert outcome.response["score"] == 10 and outcome.response["attempts"] == 1
    assert [(e.call_key.removeprefix(job.request_id), e.kind, e.model) for e in entries] == [
        (":call:1", "call", "sim-large"),
        (":validation:1", "validation", "sim-validator"),
    ]
    assert Decimal(outcome.response["cost"]) == sum(e.cost for e in entries)


def test_a_score_below_minimum_is_retried_then_fails_with_the_score(store):
    # The simulator's validator scores a one-word category by word overlap with the input:
    # "science" is not a word of TEXT, so it scores 2, every time.
    sim = ModelSimulator()
    _, (job,) = _jobs(store, [TEXT])
    outcome, entries = _submit(
        sim, job, phase_name="categorization", task_type="categorize", model="sim-small",
        validation_enabled=True, min_score=7, max_validation_attempts=3,
    )  # fmt: skip
    assert outcome.status == JobStatus.FAILED
    assert outcome.error == "validation score 2 below minimum 7"
    assert outcome.response["output"] == "science"
    assert outcome.response["score"] == 2 and outcome.response["attempts"] == 3
    assert [e.call_key.removeprefix(job.request_id) for e in entries] == [
        ":call:1", ":validation:1", ":call:2", ":validation:2", ":call:3", ":validation:3",
    ]  # fmt: skip
    assert [e.kind for e in entries] == [
        "call",
        "validation",
        "retry",
        "validation",
        "retry",
        "validation",
    ]
    assert sim.stats()["billed_calls"] == 6  # each retry is a new, billed call


def test_embedding_generation_embeds_the_content(store):
    sim = ModelSimulator()
    _, (job,) = _jobs(store, [TEXT])
    outcome, (entry,) = _submit(
        sim, job, phase_name="embed", task_type="embedding_generation", model="sim-embed",
        validation_enabled=True,  # vectors are not validated
    )  # fmt: skip
    assert outcome.status == JobStatus.FINISHED
    vector = outcome.response["output"]
    assert len(vector) == 64 and all(isinstance(x, float) for x in vector)
    assert outcome.response["score"] is None
    assert (
        entry.model == "sim-embed" and entry.usage.completion_tokens == 0 and entry.kind == "call"
    )
    assert sim.stats()["billed_calls"] == 1


def test_resubmitting_the_same_job_replays_and_adds_nothing_to_the_ledger(store):
    sim = ModelSimulator()
    batch_id, (job,) = _jobs(store, [TEXT])
    kw = {
        "validation_enabled": True,
        "phase_name": "categorization",
        "task_type": "categorize",
        "model": "sim-small",
    }
    first, entries = _submit(sim, job, **kw)
    assert store.record_cost_entries(entries) == len(entries) == 6
    billed = sim.stats()["billed_calls"]

    # A resumed run redoes the item: same request_id, so same keys, so replays.
    again, replayed = _submit(sim, job, **kw)
    stats = sim.stats()
    assert stats["billed_calls"] == billed and stats["replays"] == 6
    assert replayed == entries and again.response["output"] == first.response["output"]
    assert store.record_cost_entries(replayed) == 0
    assert store.cost_totals(batch_id).calls == 6


def test_cost_is_recorded_even_when_a_later_call_fails(store):
    sim = ModelSimulator()
    _, (job,) = _jobs(store, [TEXT])
    recorded: list[CostEntry] = []

    async def go():
        async with model_client(sim) as client:
            handler = PhaseHandler(
                client, phase_name="s", task_type="summarization", model="sim-large",
                validation_enabled=True, on_cost=recorded.extend,
            )  # fmt: skip
            real_chat = client.chat

            async def chat(messages, *, model, **kw):
                if model == "sim-validator":
                    raise RuntimeError("validator down")
                return await real_chat(messages, model=model, **kw)

            client.chat = chat
            await handler.submit(job)

    with pytest.raises(RuntimeError, match="validator down"):
        asyncio.run(go())
    assert [e.kind for e in recorded] == ["call"]  # the billed work call is in the ledger


def test_an_unpriced_model_is_refused_up_front():
    with pytest.raises(ConfigurationError, match="no price configured for model 'mystery'"):
        PhaseHandler(None, phase_name="p", task_type="chat", model="mystery")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'judge'"):
        PhaseHandler(
            None, phase_name="p", task_type="chat", model="sim-small",  # type: ignore[arg-type]
            validation_enabled=True, validator_model="judge",
        )  # fmt: skip


def test_run_batch_over_items_bills_one_call_per_item(store):
    sim = ModelSimulator()
    sentences = split_sentences(TEXT)
    contents = [" ".join(sentences[i:] + sentences[:i]) for i in range(len(sentences))]
    batch_id, _ = _jobs(store, contents)

    async def go():
        async with model_client(sim) as client:
            handler = PhaseHandler(
                client, phase_name="summarize", task_type="summarization", model="sim-large",
                on_cost=_ledger(store),
            )  # fmt: skip
            return await run_batch(store, batch_id, handler, FAST), handler

    result, handler = asyncio.run(go())
    assert result.status == BatchStatus.COMPLETED, result.reconciliation.reason
    jobs = store.list_jobs(batch_id)
    assert all(j.status == JobStatus.FINISHED for j in jobs)

    totals = store.cost_totals(batch_id)
    assert totals.calls == len(contents) == sim.stats()["billed_calls"]
    assert totals.by_kind == {"call": totals.total_cost}
    assert set(totals.by_item) == {str(i) for i in range(1, len(contents) + 1)}
    assert totals.total_cost == sum(Decimal(j.submission_response["cost"]) for j in jobs)
    assert totals.prompt_tokens == sim.stats()["prompt_tokens_total"]

    # A crashed run redoing every item (same jobs, same keys) bills nothing more.
    async def redo():
        async with model_client(sim) as client:
            handler.client = client
            for job in jobs:
                await handler.submit(job)

    asyncio.run(redo())
    assert store.cost_totals(batch_id) == totals
    assert sim.stats()["billed_calls"] == len(contents)
