"""Runs a document job's phases over its items: bounded concurrency, checkpoints, control.

Items are not Dagster partitions (a materialization per item would cost more than the
work); a phase's materialization calls ``DocumentJobRunner.run_phase``, which processes
every item not yet done in that phase with the job's concurrency.

Durability. Results go to a buffer that is written - results and their ledger entries in
one transaction - whenever it holds checkpoint-frequency results, when the phase ends or
stops, and at least every ``max_checkpoint_seconds``. The write runs on the event loop, so
no result is taken in while it runs: a kill loses at most checkpoint-frequency finished
items. Those, and the calls in flight (which the service may already have answered), are
redone with the same idempotency keys; the service answers them from its replay cache
without billing, and the ledger's unique call keys keep the cost exactly once.

Control. Every ``control_check_seconds`` the runner re-reads the job status (a pause or
cancel from the UI or CLI stops dispatching; in-flight items finish and are written),
and renews its claim on the job.

Budget. Every call reserves its worst-case cost first (``budget.CostGuard``); when the next
call's worst case cannot fit in what is left of the budget, no further item is started, the
job is paused with the reason and ``on_budget`` is told. What is spent never passes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batch_pipelines.clients.http import BadRequest, UnexpectedResponse
from batch_pipelines.clients.models import ModelClient
from batch_pipelines.core.concurrency import drain
from batch_pipelines.core.costs import DEFAULT_PRICES, CostEntry, PriceTable
from batch_pipelines.core.errors import IllegalTransition
from batch_pipelines.document_ai.batch_jobs import DocJobStatus
from batch_pipelines.document_ai.budget import (
    BudgetReached,
    CostGuard,
    prompt_token_bound,
    worst_case_cost,
)
from batch_pipelines.document_ai.claims import new_runner_id
from batch_pipelines.document_ai.phase_handler import EMBEDDING_TASK, ItemOutcome, PhaseHandler
from batch_pipelines.document_ai.pipelines import PhaseSpec, PipelineTemplate
from batch_pipelines.document_ai.router import DEFAULT_ROUTER, DEFAULT_VALIDATOR_MODEL, ModelRouter
from batch_pipelines.document_ai.store import (
    COMPLETED,
    FAILED,
    DocumentJob,
    DocumentJobStore,
    JobNotRunnable,
    PhaseResult,
    WorkItem,
)

log = logging.getLogger(__name__)

RAG_PASSAGES = 3
# Errors that belong to one item, not to the job.
ITEM_ERRORS = (BadRequest, UnexpectedResponse)


@dataclass
class PhaseReport:
    """What one phase run did; the numbers become the materialization's metadata."""

    phase: str
    task_type: str
    model: str
    items_total: int
    done_before: int = 0
    completed: int = 0
    failed: int = 0
    cost: Decimal = Decimal(0)
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)
    checkpoints: int = 0
    stopped: str | None = None  # paused | cancelled | budget | claim_lost
    duration_seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.completed + self.failed

    @property
    def success_rate(self) -> float | None:
        return round(100.0 * self.completed / self.processed, 2) if self.processed else None

    def latency_mean(self) -> float | None:
        return round(statistics.fmean(self.latencies), 6) if self.latencies else None

    def latency_p95(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 6)

    def score_distribution(self) -> dict[str, int]:
        dist: dict[str, int] = {}
        for s in self.scores:
            dist[str(s)] = dist.get(str(s), 0) + 1
        return dict(sorted(dist.items(), key=lambda kv: int(kv[0])))


@dataclass(frozen=True)
class RunnerOptions:
    lease_seconds: float = 30.0
    control_check_seconds: float = 0.5
    max_checkpoint_seconds: float = 2.0
    validator_model: str = DEFAULT_VALIDATOR_MODEL


Retriever = Callable[
    ..., Any
]  # async (project_id, query, *, k, idempotency_key, phase, item_id, on_cost) -> passages


class DocumentJobRunner:
    """One process working on one document job (it holds the job's runner claim)."""

    def __init__(
        self,
        jobs: DocumentJobStore,
        job: DocumentJob,
        template: PipelineTemplate,
        client: ModelClient,
        *,
        router: ModelRouter = DEFAULT_ROUTER,
        prices: PriceTable = DEFAULT_PRICES,
        retrieve: Retriever | None = None,
        options: RunnerOptions = RunnerOptions(),
        on_budget: Callable[[DocumentJob, Decimal], None] | None = None,
        runner_id: str | None = None,
        retrieval_model: str | None = None,
    ) -> None:
        if template.name != job.pipeline:
            raise ValueError(f"job {job.key} runs pipeline {job.pipeline!r}, not {template.name!r}")
        self.jobs = jobs
        self.job = job
        # The job's own phases, when it carries them, replace the template's.
        self.template = job.template(template)
        self.client = client
        self.router = router
        self.prices = prices
        self.retrieve = retrieve
        self.options = options
        self.on_budget = on_budget
        # The embedding model ``retrieve`` uses, so a budget reserves its query's cost too.
        self.retrieval_model = retrieval_model
        # host:pid:token, so a worker killed on this machine is known dead at once.
        self.runner_id = runner_id or new_runner_id()

    # ------------------------------------------------------------------ claim
    def claim(self, wait_seconds: float = 0.0) -> DocumentJob:
        """Check the job is RUNNING and take the runner claim (raises JobNotRunnable).

        A claim left by a dead worker is taken over at once when the worker is known dead
        (its pid is gone on this host, or its lease ran out); a live worker's claim is
        respected: ``wait_seconds`` lets a successor (a run retry, a resumed run) wait that
        long for it to let go, then the error says who holds it.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            job = self.jobs.get_job(self.job.id)
            if job.status != DocJobStatus.RUNNING:
                raise JobNotRunnable(
                    f"job {job.key} is {job.status}, not RUNNING",
                    details={"status": job.status.value},
                )
            if self.jobs.claim_runner(job.id, self.runner_id, self.options.lease_seconds):
                self.job = job
                return job
            state = self.jobs.claim_state(job)
            if state.dead and self.jobs.take_over_claim(
                job.id, state.holder_id, self.runner_id, self.options.lease_seconds
            ):
                log.warning("document job %s: claim taken over (%s)", job.key, state.why)
                self.job = job
                return job
            if time.monotonic() >= deadline:
                raise JobNotRunnable(
                    f"job {job.key} cannot be run here: {state.why}; wait for it to finish or "
                    "pause the job",
                    details={"runner": job.runner_id},
                )
            time.sleep(min(1.0, max(0.05, self.options.lease_seconds / 10)))

    def release(self) -> None:
        self.jobs.release_runner(self.job.id, self.runner_id)

    def model_for(self, spec: PhaseSpec) -> str:
        return self.router.model_for(spec.task_type, spec.model)

    def _handler(self, spec: PhaseSpec, guard: CostGuard | None = None) -> PhaseHandler:
        return PhaseHandler(
            self.client,
            phase_name=spec.name,
            task_type=spec.task_type,
            model=self.model_for(spec),
            prices=self.prices,
            validation_enabled=spec.validation.enabled,
            min_score=spec.validation.min_score,
            max_validation_attempts=spec.validation.max_attempts,
            validator_model=self.options.validator_model,
            guard=guard,
        )

    # ------------------------------------------------------------------ phases
    def phase_index(self, phase: str) -> int:
        for i, spec in enumerate(self.template.phases):
            if spec.name == phase:
                return i
        raise KeyError(phase)

    async def run_phase(
        self, phase: str, on_progress: Callable[[PhaseReport], None] | None = None
    ) -> PhaseReport:
        """Process every item not yet done in ``phase``; return the report of this run."""
        index = self.phase_index(phase)
        spec = self.template.phases[index]
        previous = self.template.phases[index - 1].name if index else None
        last = index == len(self.template.phases) - 1
        budget = self.job.options.cost_budget
        guard = CostGuard(
            Decimal(budget) if budget is not None else None,
            self.jobs.store.ledger_total(self.job.batch_id)[0]
            if budget is not None
            else Decimal(0),
        )
        handler = self._handler(spec, guard)
        self.jobs.set_current_phase(self.job.id, spec.name)
        work = self.jobs.pending_work(self.job.batch_id, spec.name, previous)
        counts = self.jobs.phase_counts(self.job.batch_id).get(spec.name, {})
        report = PhaseReport(
            phase=spec.name,
            task_type=str(spec.task_type),
            model=handler.model,
            items_total=self.job.item_count,
            done_before=sum(counts.values()),
        )
        if not work:
            return report
        phase_run = _PhaseRun(
            self, spec, handler, guard, work, report, index == 0, last, on_progress
        )
        await phase_run.run()
        return report

    async def run_all(
        self,
        on_progress: Callable[[PhaseReport], None] | None = None,
        claim_wait_seconds: float = 0.0,
        on_phase: Callable[[PhaseReport], None] | None = None,
    ) -> list[PhaseReport]:
        """Every phase in order, then complete the job (used by the CLI, demo and kill test).

        ``on_phase`` is told each phase's report as soon as the phase ends (stopped or not),
        before the next phase starts and the last one before the job is completed, so what
        it records of a phase is lost to a kill only while that phase is in flight.
        """
        self.claim(claim_wait_seconds)
        reports: list[PhaseReport] = []
        try:
            for spec in self.template.phases:
                report = await self.run_phase(spec.name, on_progress)
                reports.append(report)
                if on_phase is not None:
                    on_phase(report)
                if report.stopped:
                    return reports
            self.finish()
            return reports
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                self.fail(exc)
            raise
        finally:
            self.release()

    def finish(self) -> DocumentJob:
        """Mark the job COMPLETED when every item is settled in every phase."""
        self.jobs.set_current_phase(self.job.id, None)
        self.job = self.jobs.apply_action(self.job.id, "complete")
        return self.job

    def fail(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        # Paused or cancelled meanwhile: that status stands.
        with contextlib.suppress(IllegalTransition):
            self.jobs.apply_action(self.job.id, "fail", reason=reason)


class _PhaseRun:
    """The moving parts of one phase run: workers, the checkpoint buffer, the control loop."""

    def __init__(
        self,
        runner: DocumentJobRunner,
        spec: PhaseSpec,
        handler: PhaseHandler,
        guard: CostGuard,
        work: Sequence[WorkItem],
        report: PhaseReport,
        first: bool,
        last: bool,
        on_progress: Callable[[PhaseReport], None] | None,
    ) -> None:
        self.runner = runner
        self.jobs = runner.jobs
        self.job = runner.job
        self.spec = spec
        self.handler = handler
        self.work = list(work)
        self.report = report
        self.first = first
        self.last = last
        self.on_progress = on_progress
        self.frequency = self.job.options.checkpoint_frequency
        self.buffer: list[PhaseResult] = []
        self.entries: list[CostEntry] = []
        self.write_lock = asyncio.Lock()
        self.stop: str | None = None
        self.last_write = time.monotonic()
        self.guard = guard
        self.budget = guard.limit

    async def run(self) -> None:
        started = time.perf_counter()
        control = asyncio.create_task(self._control())
        try:
            await drain(
                self._item,
                self.work,
                self.job.options.concurrency,
                until=lambda: self.stop is not None,
            )
        finally:
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)
        await self._write()
        self.report.stopped = self.stop
        self.report.duration_seconds = time.perf_counter() - started
        if self.stop == "budget":
            self._pause_for_budget()
        if self.on_progress:
            self.on_progress(self.report)

    # ------------------------------------------------------------------ workers
    async def _item(self, item: WorkItem) -> None:
        try:
            outcome, passages = await self._process(item)
        except BudgetReached:
            # Not sent: the item stays to do; what it was billed before is in the checkpoint.
            self.stop = self.stop or "budget"
            return
        await self._add(outcome, passages)

    async def _process(self, item: WorkItem) -> tuple[ItemOutcome, list[dict[str, Any]] | None]:
        request_id = f"doc-{self.job.batch_id}-{item.item_id}-{self.spec.name}"
        content = item.content
        if not isinstance(content, str):
            # The previous phase stored its passages with its output.
            content = content.get("value") if isinstance(content, dict) else content
        passages: list[dict[str, Any]] | None = None
        texts: list[str] = []
        # The query's embedding cost goes into this item's checkpoint with its other calls.
        retrieval_entries: list[CostEntry] = []
        if (
            self.spec.use_rag
            and self.runner.retrieve is not None
            and self.spec.task_type != EMBEDDING_TASK
        ):
            reserved = self._retrieval_worst_case(str(content))
            await self.guard.reserve(reserved)
            try:
                found = await self.runner.retrieve(
                    self.job.project_id,
                    str(content),
                    k=RAG_PASSAGES,
                    idempotency_key=f"{request_id}:retrieval",
                    phase=self.spec.name,
                    item_id=item.item_id,
                    on_cost=retrieval_entries.extend,
                )
            finally:
                self.guard.settle(reserved, sum((e.cost for e in retrieval_entries), Decimal(0)))
            passages = [
                {
                    "document": p.document,
                    "passage_index": p.passage_index,
                    "text": p.text,
                    "score": round(p.score, 4),
                }
                for p in found
            ]
            texts = [p["text"] for p in passages]
        # The item's billed calls, as they answer: kept even when a later call of it fails.
        spent: list[CostEntry] = []
        try:
            outcome = await self.handler.run_item(
                item_id=item.item_id,
                content=content,
                request_id=request_id,
                batch_id=self.job.batch_id,
                passages=texts,
                target_language=self.job.options.target_language,
                spent=spent,
            )
        except ITEM_ERRORS as exc:
            # The service refuses this item or answers it with garbage: the item fails and the
            # others go on; what it was billed before that goes into its checkpoint.
            outcome = ItemOutcome(
                item_id=item.item_id,
                ok=False,
                output=None,
                score=None,
                attempts=1,
                entries=tuple(spent),
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_seconds=0.0,
            )
        except BudgetReached:
            # The item's next call does not fit in the budget: what it was billed so far
            # goes into the next checkpoint (a resumed run replays those calls unbilled).
            async with self.write_lock:
                self.entries.extend([*retrieval_entries, *spent])
            raise
        except Exception:
            # Errors that concern every item (bad key, unknown model, a service down after the
            # client's retries) fail the job, to be resumed. The calls this item was billed
            # are recorded now: a resumed run would replay them under the same keys, but a
            # job cancelled instead would never record them.
            if spent or retrieval_entries:
                try:
                    self.jobs.store.record_cost_entries([*retrieval_entries, *spent])
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    log.warning(
                        "document job %s: recording a failed item's cost failed",
                        self.job.key,
                        exc_info=True,
                    )
            raise
        if retrieval_entries:
            outcome = dataclasses.replace(outcome, entries=(*retrieval_entries, *outcome.entries))
        return outcome, passages

    async def _add(self, outcome: ItemOutcome, passages: list[dict[str, Any]] | None) -> None:
        async with self.write_lock:
            self.buffer.append(
                PhaseResult(
                    item_id=outcome.item_id,
                    phase=self.spec.name,
                    status=COMPLETED if outcome.ok else FAILED,
                    output=outcome.output,
                    score=outcome.score,
                    attempts=outcome.attempts,
                    error=outcome.error,
                    latency_seconds=round(outcome.latency_seconds, 6),
                    passages=passages,
                    first_phase=self.first,
                    last_phase=self.last,
                )
            )
            self.entries.extend(outcome.entries)
            r = self.report
            r.completed += outcome.ok
            r.failed += not outcome.ok
            r.cost += outcome.cost
            r.tokens += outcome.tokens
            r.latencies.append(outcome.latency_seconds)
            if outcome.score is not None:
                r.scores.append(outcome.score)
            if len(self.buffer) >= self.frequency:
                await self._write_locked()

    async def _write(self) -> None:
        async with self.write_lock:
            await self._write_locked()

    async def _write_locked(self) -> None:
        if not self.buffer and not self.entries:
            return
        results, entries = self.buffer, self.entries
        self.buffer, self.entries = [], []
        # Written on the event loop on purpose: while the transaction runs no other item can
        # finish, so finished-but-unwritten results never exceed one checkpoint's worth.
        self.jobs.write_checkpoint(self.job.batch_id, results, entries)
        self.report.checkpoints += 1
        self.last_write = time.monotonic()

    # ------------------------------------------------------------------ control
    async def _control(self) -> None:
        every = self.runner.options.control_check_seconds
        while True:
            await asyncio.sleep(every)
            try:
                status = await asyncio.to_thread(self.jobs.status_of, self.job.id)
                if status == DocJobStatus.PAUSED:
                    self.stop = self.stop or "paused"
                elif status == DocJobStatus.CANCELLED:
                    self.stop = self.stop or "cancelled"
                elif status != DocJobStatus.RUNNING:
                    self.stop = self.stop or status.value.lower()
                claimed = await asyncio.to_thread(
                    self.jobs.claim_runner,
                    self.job.id,
                    self.runner.runner_id,
                    self.runner.options.lease_seconds,
                )
                if not claimed:
                    self.stop = self.stop or "claim_lost"
                if time.monotonic() - self.last_write >= self.runner.options.max_checkpoint_seconds:
                    await self._write()
                if self.on_progress:
                    self.on_progress(self.report)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a control hiccup must not kill the phase
                log.warning("document job %s: control check failed", self.job.key, exc_info=True)

    def _retrieval_worst_case(self, query: str) -> Decimal:
        """What embedding the retrieval query may cost (0 when its model is not known)."""
        model = self.runner.retrieval_model
        if model is None:
            return Decimal(0)
        return worst_case_cost(prompt_token_bound(query), 0, self.runner.prices.price_for(model))

    def _pause_for_budget(self) -> None:
        spent = self.guard.spent
        reason = (
            f"cost budget {self.budget} reached: {spent.quantize(Decimal('0.000001'))} spent; "
            "the next call could pass it"
        )
        try:
            job = self.jobs.apply_action(self.job.id, "pause", reason=reason)
        except IllegalTransition:
            return  # paused or cancelled by someone meanwhile
        if self.runner.on_budget:
            self.runner.on_budget(job, spent)
