"""The document job runner against the model simulator: phases, checkpoints, control, budget."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from batch_pipelines.core.errors import IllegalTransition, NotFound
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, DocJobStatus, JobOptions
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.runner import DocumentJobRunner, JobNotRunnable, RunnerOptions
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.models import ModelSimulator

PIPELINES = load_pipelines()
TEXTS = [
    "Marie Curie studied radioactivity in Paris. She won two Nobel Prizes for physics and chemistry.",
    "The quarterly revenue grew by ten percent. Profit margins improved while costs fell in Europe.",
    "The football match ended in a draw. The team scored twice in the second half at the stadium.",
    "A new vaccine trial reported strong results. Doctors at the hospital treated patients safely.",
]
FAST = RunnerOptions(control_check_seconds=0.02, max_checkpoint_seconds=0.2)


def _spec(n: int, pipeline: str = "document_pipeline", **options) -> BatchJobSpec:
    items = parse_items(
        [{"content": TEXTS[i % len(TEXTS)] + f" Document number {i}."} for i in range(n)]
    )
    return BatchJobSpec(
        name=f"test {pipeline}",
        project_id="proj-1",
        pipeline=pipeline,
        items=items,
        options=JobOptions(**options),
    )


def _run(jobs: DocumentJobStore, job, sim: ModelSimulator, **kwargs):
    async def go():
        async with model_client(sim) as client:
            runner = DocumentJobRunner(
                jobs, job, PIPELINES[job.pipeline], client, options=FAST, **kwargs
            )
            return await runner.run_all()

    return asyncio.run(go())


@pytest.fixture
def jobs(store) -> DocumentJobStore:
    return DocumentJobStore(store)


def test_a_job_runs_every_item_through_every_phase_and_bills_each_call_once(jobs):
    job = jobs.create_job(
        _spec(12, concurrency=4, checkpoint_frequency=5), PIPELINES["document_pipeline"]
    )
    assert job.status == DocJobStatus.RUNNING
    sim = ModelSimulator()
    reports = _run(jobs, job, sim)

    assert [r.phase for r in reports] == ["ocr_extraction", "summarization", "categorization"]
    assert jobs.get_job(job.id).status == DocJobStatus.COMPLETED
    counts = jobs.phase_counts(job.batch_id)
    assert {p: sum(c.values()) for p, c in counts.items()} == {
        p.name: 12 for p in PIPELINES["document_pipeline"].phases
    }
    entries = jobs.store.list_cost_entries(job.batch_id)
    assert len(entries) == sim.stats()["billed_calls"]
    assert len({e.call_key for e in entries}) == len(entries)
    assert sum(r.cost for r in reports) == jobs.cost_totals(job.batch_id).total_cost
    # categorization output is a real category derived from the text
    cats = [row["output"] for row in jobs.phase_rows(job.batch_id, ["categorization"])]
    assert all(isinstance(c, str) and c for c in cats)


def test_a_completed_job_cannot_be_cancelled_and_a_rerun_finds_nothing_to_do(jobs):
    job = jobs.create_job(
        _spec(6, pipeline="embedding_regeneration"), PIPELINES["embedding_regeneration"]
    )
    sim = ModelSimulator()
    _run(jobs, job, sim)
    with pytest.raises(IllegalTransition, match="cannot cancel a job that is COMPLETED"):
        jobs.apply_action(job.id, "cancel")
    assert jobs.pending_work(job.batch_id, "generate_embeddings", None) == []
    vectors = [row["output"] for row in jobs.phase_rows(job.batch_id)]
    assert all(isinstance(v, list) and len(v) > 8 for v in vectors)


def test_a_job_that_is_not_running_cannot_be_run(jobs):
    job = jobs.create_job(_spec(3, auto_start=False), PIPELINES["document_pipeline"])
    assert job.status == DocJobStatus.PENDING
    with pytest.raises(JobNotRunnable, match="PENDING, not RUNNING"):
        _run(jobs, job, ModelSimulator())


def test_a_pause_stops_dispatching_and_a_resume_finishes_without_billing_twice(jobs):
    job = jobs.create_job(
        _spec(40, concurrency=2, checkpoint_frequency=3), PIPELINES["document_pipeline"]
    )
    sim = ModelSimulator(faults=FaultPlan(latency_seconds=0.01))

    async def go():
        async with model_client(sim) as client:
            runner = DocumentJobRunner(
                jobs, job, PIPELINES["document_pipeline"], client, options=FAST
            )
            task = asyncio.create_task(runner.run_all())
            while jobs.phase_counts(job.batch_id).get("ocr_extraction", {}).get("COMPLETED", 0) < 5:
                await asyncio.sleep(0.01)
            jobs.apply_action(job.id, "pause")
            return await task

    reports = asyncio.run(go())
    assert reports[-1].stopped == "paused"
    paused = jobs.get_job(job.id)
    assert paused.status == DocJobStatus.PAUSED
    done = sum(jobs.phase_counts(job.batch_id).get("ocr_extraction", {}).values())
    assert 5 <= done < 40
    with pytest.raises(IllegalTransition, match="only a RUNNING job can be paused"):
        jobs.apply_action(job.id, "pause")
    resumed = jobs.apply_action(job.id, "resume")
    assert resumed.generation == paused.generation + 1

    _run(jobs, resumed, sim)
    assert jobs.get_job(job.id).status == DocJobStatus.COMPLETED
    entries = jobs.store.list_cost_entries(job.batch_id)
    assert len(entries) == sim.stats()["billed_calls"]


def test_a_job_pauses_before_its_cost_passes_the_budget_and_says_why(jobs):
    budget = Decimal("0.0005")
    job = jobs.create_job(
        _spec(30, concurrency=1, checkpoint_frequency=1, cost_budget=budget),
        PIPELINES["document_pipeline"],
    )
    told = []
    _run(jobs, job, ModelSimulator(), on_budget=lambda j, spent: told.append((j.key, spent)))
    paused = jobs.get_job(job.id)
    assert paused.status == DocJobStatus.PAUSED
    assert "cost budget 0.0005 reached" in paused.status_reason
    assert told and told[0][0] == job.key
    assert jobs.cost_totals(job.batch_id).total_cost <= budget


def test_a_new_budget_is_stored_on_the_job_and_its_batch_alike_and_a_bad_one_changes_nothing(
    jobs, store
):
    from batch_pipelines.core.errors import ConfigurationError

    job = jobs.create_job(_spec(2, cost_budget=Decimal("0.001")), PIPELINES["document_pipeline"])
    changed = jobs.set_cost_budget(job.key, Decimal("0.25"))
    assert changed.options.cost_budget == Decimal("0.25")
    assert Decimal(str(store.get_batch(job.batch_id).options["cost_budget"])) == Decimal("0.25")
    with pytest.raises(ConfigurationError, match="cost_budget"):
        jobs.set_cost_budget(job.key, Decimal("-1"))
    assert jobs.get_job(job.id).options.cost_budget == Decimal("0.25")
    assert Decimal(str(store.get_batch(job.batch_id).options["cost_budget"])) == Decimal("0.25")


def test_deleting_removes_the_job_with_its_items_results_and_ledger(jobs):
    job = jobs.create_job(
        _spec(3, pipeline="embedding_regeneration"), PIPELINES["embedding_regeneration"]
    )
    with pytest.raises(IllegalTransition, match="cannot delete a job that is RUNNING"):
        jobs.delete_job(job.id)
    _run(jobs, job, ModelSimulator())
    jobs.delete_job(job.key)
    with pytest.raises(NotFound):
        jobs.get_job(job.id)
    assert jobs.items(job.batch_id) == []
    assert jobs.store.list_cost_entries(job.batch_id) == []


def test_no_checkpoint_ever_holds_more_than_the_checkpoint_frequency_of_results(jobs):
    job = jobs.create_job(
        _spec(57, concurrency=8, checkpoint_frequency=4), PIPELINES["document_pipeline"]
    )
    sizes: list[int] = []
    write = jobs.write_checkpoint

    def recording(batch_id, results, entries):
        sizes.append(len(results))
        return write(batch_id, results, entries)

    jobs.write_checkpoint = recording  # type: ignore[method-assign]
    _run(jobs, job, ModelSimulator())
    assert max(sizes) == 4  # full checkpoints, never more (a kill loses at most these)
    assert sum(sizes) == 57 * 3


def test_a_high_concurrency_does_not_overshoot_the_budget(jobs):
    budget = Decimal("0.0005")
    job = jobs.create_job(
        _spec(60, concurrency=20, checkpoint_frequency=5, cost_budget=budget),
        PIPELINES["document_pipeline"],
    )
    _run(jobs, job, ModelSimulator(faults=FaultPlan(latency_seconds=0.02)))
    assert jobs.get_job(job.id).status == DocJobStatus.PAUSED
    spent = jobs.cost_totals(job.batch_id).total_cost
    assert 0 < spent <= budget, (spent, budget)  # a hard bound: every call reserved first


@pytest.mark.parametrize("budget", ["0.0002", "0.0005", "0.0011", "0.003"])
def test_the_budget_is_a_hard_bound_the_ledger_never_passes(jobs, budget):
    # Short items first, then long ones: a budget judged on the mean cost so far lets a long
    # item in that the remaining budget cannot pay for.
    budget = Decimal(budget)
    texts = [f"Short note {i}." for i in range(3)] + [
        " ".join(TEXTS * 8) + f" {i}" for i in range(20)
    ]
    job = jobs.create_job(
        BatchJobSpec(
            name="uneven items",
            project_id="proj-1",
            pipeline="book_translation",
            items=parse_items([{"content": t} for t in texts]),
            options=JobOptions(concurrency=1, cost_budget=budget),
        ),
        PIPELINES["book_translation"],
    )
    _run(jobs, job, ModelSimulator(faults=FaultPlan(latency_seconds=0.005)))
    paused = jobs.get_job(job.id)
    assert paused.status == DocJobStatus.PAUSED
    assert jobs.cost_totals(job.batch_id).total_cost <= budget


def test_retrieval_costs_join_the_items_checkpoints_and_the_phase_cost(jobs):
    from batch_pipelines.document_ai.rag import ReferenceLibrary

    job = jobs.create_job(_spec(4, pipeline="book_translation"), PIPELINES["book_translation"])
    sim = ModelSimulator()
    direct: list = []

    async def go():
        async with model_client(sim) as client:
            library = ReferenceLibrary(
                jobs.engine, client, on_cost=direct.extend, batch_id=job.batch_id
            )
            await library.add_document(
                "proj-1", "notes.md", "Marie Curie worked in Paris.\n\nThe bank raised rates."
            )
            direct.clear()  # indexing is billed by the library's own sink
            runner = DocumentJobRunner(
                jobs,
                job,
                PIPELINES["book_translation"],
                client,
                options=FAST,
                retrieve=library.retrieve,
            )
            return await runner.run_all()

    reports = asyncio.run(go())
    assert direct == []  # retrieval during the run went through the runner, not the library's sink
    entries = jobs.store.list_cost_entries(job.batch_id)
    retrieval = [e for e in entries if e.kind == "retrieval"]
    assert len(retrieval) == 4 and {e.phase for e in retrieval} == {"xml_tagging"}
    tagging = next(r for r in reports if r.phase == "xml_tagging")
    assert tagging.cost == sum((e.cost for e in entries if e.phase == "xml_tagging"), Decimal(0))


def _run_with_refusals(jobs, job, sim, refusal):
    """Run ``job`` to the end against ``sim``, through a client whose chat raises
    ``refusal(messages, model, idempotency_key)`` whenever that returns an error."""

    async def go():
        async with model_client(sim) as client:
            real_chat = client.chat

            async def chat(messages, *, model, idempotency_key=None, **kw):
                if (error := refusal(messages, model, idempotency_key)) is not None:
                    raise error
                return await real_chat(messages, model=model, idempotency_key=idempotency_key, **kw)

            client.chat = chat
            return await DocumentJobRunner(
                jobs, job, PIPELINES[job.pipeline], client, options=FAST
            ).run_all()

    return asyncio.run(go())


def test_an_item_refused_midway_fails_alone_and_keeps_the_cost_of_its_billed_calls(jobs):
    from batch_pipelines.clients.http import BadRequest

    job = jobs.create_job(_spec(4, concurrency=2), PIPELINES["document_pipeline"])
    sim = ModelSimulator()

    def refusal(messages, model, idempotency_key):
        # The validator refuses item 2's first phase: its work call was already billed.
        if (
            model == "sim-validator"
            and "Document number 1." in str(messages)
            and ":validation:" in idempotency_key
        ):
            return BadRequest("the validator refuses this document", status=400)
        return None

    _run_with_refusals(jobs, job, sim, refusal)
    items = jobs.items(job.batch_id)
    failed = [i for i in items if i["status"] == "FAILED"]
    assert len(failed) == 1 and sum(i["status"] == "COMPLETED" for i in items) == 3
    # Every call the service billed is in the ledger once, the refused item's work call included.
    totals = jobs.cost_totals(job.batch_id)
    assert totals.calls == sim.stats()["billed_calls"]
    assert jobs.cost_by_item(job.batch_id, [failed[0]["id"]])[failed[0]["id"]] > 0


def test_a_job_failing_on_a_service_error_still_records_what_the_failing_item_was_billed(jobs):
    job = jobs.create_job(_spec(1, concurrency=1), PIPELINES["document_pipeline"])
    sim = ModelSimulator()

    def refusal(messages, model, idempotency_key):
        # Not an item error: the job fails.
        return RuntimeError("validator down") if model == "sim-validator" else None

    with pytest.raises(RuntimeError, match="validator down"):
        _run_with_refusals(jobs, job, sim, refusal)
    assert sim.stats()["billed_calls"] == 1  # the work call, answered before the validator failed
    assert jobs.cost_totals(job.batch_id).calls == 1


def test_there_is_no_eta_until_an_item_has_gone_through_the_whole_pipeline(jobs):
    from batch_pipelines.document_ai.reports import job_status

    template = PIPELINES["document_pipeline"]
    job = jobs.create_job(_spec(6, concurrency=2), template)

    async def first_phase_only():
        async with model_client(ModelSimulator()) as client:
            runner = DocumentJobRunner(jobs, job, template, client, options=FAST)
            runner.claim()
            try:
                await runner.run_phase(template.phases[0].name)
            finally:
                runner.release()

    asyncio.run(first_phase_only())
    status = job_status(jobs, jobs.get_job(job.id), template)
    assert status["phases"][0]["completed"] == 6 and status["progress"]["completed"] == 0
    assert status["eta_seconds"] is None
