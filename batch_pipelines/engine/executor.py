"""The asyncio batch executor: drives every job of a batch to a terminal state.

Dagster works at batch granularity (a run costs seconds, a partition tens of
milliseconds), so the thousands of jobs of one batch live inside one run, here.

Guarantees:
- Nothing done twice. Jobs are claimed (row-level, with a lease) before submission and
  the claim records the intent; every submission carries the job's stored idempotency key,
  so a resumed run that resends a job the service already accepted gets a replay.
- Nothing lost. Every state change is durable before anything depends on it: changes go
  through a group-commit writer (one transaction for all changes that arrived while the
  previous commit ran) and the job's next step awaits its commit.
- Bounded. At most ``concurrency`` submissions are in flight; tracking polls many
  workflows per request at a poll interval that backs off while nothing changes.
- Steerable. Pause and cancel are read from the store, so any process (UI action, CLI)
  can steer a run it does not own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from batch_pipelines.core.aggregate import AggregatedView, aggregate_counts
from batch_pipelines.core.backoff import RetryPolicy, backoff_delay, poll_interval
from batch_pipelines.core.errors import BatchError
from batch_pipelines.core.reconciliation import SKIPPED_KEY, Reconciliation
from batch_pipelines.core.sequences import chunks
from batch_pipelines.core.statuses import (
    JOB_IN_FLIGHT,
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
    can_transition_job,
)
from batch_pipelines.engine.handlers import JobHandler, SubmitOutcome, TrackOutcome
from batch_pipelines.store.batch_store import BatchStore, JobChange, JobRecord

log = logging.getLogger("batch_pipelines.engine")

# How job statuses read in the aggregated (pending / in progress / done) view.
_VIEW_STATE = {
    JobStatus.INITIATED: "queued",
    JobStatus.FINISHED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.ERROR: "failed",
    JobStatus.CANCELLED: "failed",
    **{s: "in_progress" for s in JOB_IN_FLIGHT},
}


@dataclass(frozen=True)
class EngineOptions:
    concurrency: int = 10
    poll_interval_seconds: float = 1.0
    poll_max_interval_seconds: float = 30.0
    track_chunk_size: int = 100
    # Per-job retries of transient submission failures that escaped the client's own
    # per-request retries (e.g. a service down for longer than the client waits).
    submit_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_retries=3))
    lease_seconds: float = 60.0
    control_check_seconds: float = 1.0
    progress_interval_seconds: float = 5.0
    # Stop waiting for another run's unexpired claims after this long (None: wait).
    claim_wait_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 1000:
            raise BatchError(f"concurrency must be between 1 and 1000, got {self.concurrency}")


@dataclass(frozen=True)
class ProgressReport:
    batch_id: int
    counts: dict[str, int]
    view: AggregatedView
    elapsed_seconds: float
    submitted_this_run: int
    tracked: int

    def message(self) -> str:
        v = self.view
        eta = f", ETA {v.eta_seconds:.0f}s" if v.eta_seconds is not None else ""
        return (
            f"batch {self.batch_id}: {v.completed + v.failed}/{v.total} settled "
            f"({v.progress_percent:.1f}%), {v.in_progress} in flight, {v.failed} failed{eta}"
        )


@dataclass(frozen=True)
class BatchRunResult:
    batch_id: int
    status: BatchStatus
    reconciliation: Reconciliation
    stopped: str  # settled | paused | cancelled | waiting (other runs hold work)
    submitted: int
    submit_errors: int
    duration_seconds: float
    counts: dict[str, int]


class _GroupCommitWriter:
    """Batches job changes into few transactions without weakening durability.

    ``write`` returns only after the change is committed. While one commit runs in a
    worker thread, new changes queue up and go in the next one, so throughput grows with
    load instead of paying one transaction per change.
    """

    def __init__(self, store: BatchStore, max_batch: int = 1000):
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[JobChange, asyncio.Future]] = []
        # Every change submitted and not yet committed (or failed): queued or in the running commit.
        self._unresolved: set[asyncio.Future] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    def submit(self, change: JobChange) -> asyncio.Future[bool]:
        """Queue ``change``; the returned future resolves once it is committed: True if it
        was applied, False if the job had meanwhile left the expected status."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((change, fut))
        self._unresolved.add(fut)
        fut.add_done_callback(self._unresolved.discard)
        self._wake.set()
        return fut

    @property
    def backlog(self) -> int:
        """Changes submitted and not yet committed."""
        return len(self._unresolved)

    async def flush(self) -> None:
        """Return once every change submitted so far is committed (or has failed)."""
        if self._unresolved:
            await asyncio.wait(set(self._unresolved))

    async def write(self, *changes: JobChange) -> set[int]:
        """Queue ``changes``, return once all are committed: the ids of jobs whose change
        was not applied (someone else moved them meanwhile)."""
        if not changes:
            return set()
        applied = await asyncio.gather(*(self.submit(change) for change in changes))
        return {change.job_id for change, ok in zip(changes, applied, strict=True) if not ok}

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = (
                    self._pending[: self._max_batch],
                    self._pending[self._max_batch :],
                )
                try:
                    lost = await asyncio.to_thread(
                        self._store.apply_job_changes, [c for c, _ in batch]
                    )
                except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for change, fut in batch:
                    if not fut.done():
                        fut.set_result(change.job_id not in lost)
            if self._closed and not self._pending:
                return

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BatchExecutor:
    """Runs one batch with one handler. Create one per run; ``run`` once."""

    def __init__(
        self,
        store: BatchStore,
        handler: JobHandler,
        options: EngineOptions | None = None,
        *,
        owner: str | None = None,
        on_progress: Callable[[ProgressReport], None] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ):
        self.store = store
        self.handler = handler
        self.options = options or EngineOptions()
        self.owner = owner or default_owner()
        self.on_progress = on_progress
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._tracked: dict[int, JobRecord] = {}
        self._tracked_changed = asyncio.Event()
        self._stop_submitting = False
        self._cancelled = False
        self._paused = False
        self._submitted = 0
        self._submit_errors = 0
        # Observed job durations (sync: the call; async: submission to terminal) for the ETA.
        self._durations: list[float] = []
        self._submitted_at: dict[int, float] = {}
        self._started = time.monotonic()
        self._last_progress = 0.0
        # The first commit of a submission outcome that failed.
        self._commit_error: BaseException | None = None
        self._more_jobs_wanted = asyncio.Event()

    # ----------------------------------------------------------------- public
    async def run(self, batch_id: int) -> BatchRunResult:
        self.batch_id = batch_id
        batch = await asyncio.to_thread(self.store.get_batch, batch_id)
        if batch.status == BatchStatus.PAUSED:
            raise BatchError(
                f"batch {batch_id} is PAUSED: resume it before running", code="BP-BATCH-PAUSED"
            )
        if batch.status == BatchStatus.CANCELLED:
            raise BatchError(f"batch {batch_id} is CANCELLED", code="BP-BATCH-CANCELLED")
        if batch.status != BatchStatus.ACTIVE:
            await asyncio.to_thread(self.store.activate_batch, batch_id)
        self._run_started_at = datetime.now(UTC)

        for job in await asyncio.to_thread(
            self.store.list_jobs, batch_id, skipped=False, statuses=JOB_IN_FLIGHT
        ):
            self._tracked[job.id] = job

        self._writer = _GroupCommitWriter(self.store)
        self._writer.start()
        background = [
            asyncio.create_task(self._control_loop(), name="control"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        submission_done = asyncio.Event()
        tracker = asyncio.create_task(self._track_loop(submission_done), name="tracker")
        try:
            waiting = await self._submission_loop()
            submission_done.set()
            self._tracked_changed.set()
            await tracker
        finally:
            submission_done.set()
            self._tracked_changed.set()
            for task in background:
                task.cancel()
            if not tracker.done():
                tracker.cancel()
            await asyncio.gather(*background, tracker, return_exceptions=True)
            await self._writer.close()
            await asyncio.to_thread(self.store.release_claims, self.owner)
            if self._cancelled:
                # Jobs this run had claimed but not yet sent are cancelled now that it let go.
                await asyncio.to_thread(self.store.cancel_unsubmitted_jobs, batch_id)

        reconciliation = await asyncio.to_thread(self.store.reconcile_batch, batch_id)
        final = await asyncio.to_thread(self.store.get_batch, batch_id)
        # The reconciliation counted the jobs in its transaction: no second query.
        counts = dict(reconciliation.summary.job_status_counts)
        self._report(counts)
        if self._cancelled:
            stopped = "cancelled"
        elif self._paused:
            stopped = "paused"
        elif waiting or not final.status.is_terminal:
            stopped = "waiting"
        else:
            stopped = "settled"
        return BatchRunResult(
            batch_id=batch_id,
            status=final.status,
            reconciliation=reconciliation,
            stopped=stopped,
            submitted=self._submitted,
            submit_errors=self._submit_errors,
            duration_seconds=time.monotonic() - self._started,
            counts=counts,
        )

    # ------------------------------------------------------------- submission
    async def _submission_loop(self) -> bool:
        """Claim and submit until nothing is left; True if other runs still hold work.

        ``concurrency`` long-lived workers take claimed jobs from a queue: when a call
        returns, its worker hands the outcome to the group-commit writer and starts the next
        job at once, instead of a task per job waiting on a semaphore (whose hand-over costs
        a turn of a busy event loop and left a fifth of the slots idle under load).
        """
        queue: asyncio.Queue[JobRecord | None] = asyncio.Queue()
        workers = [
            asyncio.create_task(self._submission_worker(queue), name=f"submitter-{i}")
            for i in range(self.options.concurrency)
        ]
        try:
            waiting = await self._claim_into(queue)
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers)
            # Every outcome is committed before the run goes on (tracking, reconciling).
            await self._writer.flush()
            if self._commit_error is not None:
                # A state change could not be committed (it also stopped the claiming): stop
                # the run; claims are released and the next run resends the same keys.
                raise self._commit_error
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return waiting

    async def _claim_into(self, queue: asyncio.Queue[JobRecord | None]) -> bool:
        """Keep ``queue`` holding two to six rounds of work for the workers (a round is one
        job per worker), in claims of four rounds: a claim is a query in a worker thread,
        which waits for the GIL while the event loop is busy, so under load it can take as
        long as a round of calls, and the workers must not run dry meanwhile. True if other
        runs still hold jobs when nothing is left to claim and ``claim_wait_seconds`` has
        run out."""
        opts = self.options
        waited_since: float | None = None
        while not self._stop_submitting:
            if queue.qsize() >= 2 * opts.concurrency:
                self._more_jobs_wanted.clear()
                await self._more_jobs_wanted.wait()
                continue
            jobs = await asyncio.to_thread(
                self.store.claim_jobs,
                self.batch_id,
                self.owner,
                limit=opts.concurrency * 4,
                lease_seconds=opts.lease_seconds,
                errored_before=self._run_started_at,
            )
            if jobs:
                waited_since = None
                for job in jobs:
                    queue.put_nowait(job)
                continue
            held = await asyncio.to_thread(
                self.store.count_claimed_by_others, self.batch_id, self.owner
            )
            if not held:
                return False
            # Another run (maybe a dead one whose lease has not run out) holds jobs.
            waited_since = waited_since or time.monotonic()
            if (
                opts.claim_wait_seconds is not None
                and time.monotonic() - waited_since > opts.claim_wait_seconds
            ):
                return True
            await self._sleep(min(opts.lease_seconds / 4, 1.0))
        return False

    async def _submission_worker(self, queue: asyncio.Queue[JobRecord | None]) -> None:
        while (job := await queue.get()) is not None:
            if queue.qsize() < 2 * self.options.concurrency:
                self._more_jobs_wanted.set()
            if self._stop_submitting:
                continue  # its claim is released at the end of the run
            outcome = await self._submit_with_retries(job)
            if outcome.status == JobStatus.ERROR:
                self._submit_errors += 1
            else:
                self._submitted += 1
            committed = self._writer.submit(
                JobChange(
                    job_id=job.id,
                    expected=job.status,
                    status=outcome.status,
                    workflow_id=outcome.workflow_id,
                    submission_request=outcome.request,
                    submission_response=outcome.response,
                    last_error=outcome.error,
                    release_claim=True,
                )
            )
            committed.add_done_callback(
                lambda fut, job=job, outcome=outcome: self._on_committed(fut, job, outcome)
            )
            if self._writer.backlog > 4 * self.options.concurrency:
                await committed  # the store is behind: wait instead of queueing without bound
            await self._maybe_report()

    def _on_committed(
        self, committed: asyncio.Future, job: JobRecord, outcome: SubmitOutcome
    ) -> None:
        """A submission outcome is durable: only now may tracking depend on it."""
        if committed.cancelled():
            return
        if (error := committed.exception()) is not None:
            if self._commit_error is None:
                self._commit_error = error
            self._stop_submitting = True
            self._more_jobs_wanted.set()
            return
        if not committed.result():
            log.warning(
                "job %s was changed by someone else while this run submitted it; its outcome (%s%s) "
                "was not recorded and the job is left as they set it",
                job.id,
                outcome.status.value,
                f", workflow {outcome.workflow_id}" if outcome.workflow_id else "",
            )
            return
        if outcome.status in JOB_IN_FLIGHT:
            self._submitted_at[job.id] = time.monotonic()
            self._tracked[job.id] = _with_status(job, outcome.status, outcome.workflow_id)
            self._tracked_changed.set()

    async def _submit_with_retries(self, job: JobRecord) -> SubmitOutcome:
        policy = self.options.submit_retry
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                outcome = await self.handler.submit(job)
                if outcome.status in JOB_TERMINAL:
                    self._durations.append(time.monotonic() - started)
                return outcome
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failing job never stops the rest
                # Errors say whether a retry can help (``retryable``, e.g. a 503 yes, a 501 or
                # a 400 no); anything else is a permanent submission error.
                if not getattr(exc, "retryable", False) or attempt >= policy.max_retries:
                    return SubmitOutcome(status=JobStatus.ERROR, error=_describe(exc))
                delay = backoff_delay(
                    attempt, policy, retry_after=getattr(exc, "retry_after", None), rng=self._rng
                )
                log.info(
                    "job %s: transient submission failure (%s); retrying in %.2fs",
                    job.id,
                    exc,
                    delay,
                )
                attempt += 1
                await self._sleep(delay)

    # --------------------------------------------------------------- tracking
    async def _track_loop(self, submission_done: asyncio.Event) -> None:
        opts = self.options
        unchanged = 0
        cancel_sent: set[int] = set()
        while True:
            if not self._tracked:
                if submission_done.is_set():
                    return
                self._tracked_changed.clear()
                await self._tracked_changed.wait()
                continue
            if self._paused:
                return  # submitted workflows keep running at the service; resume re-tracks them
            await self._sleep(
                poll_interval(unchanged, opts.poll_interval_seconds, opts.poll_max_interval_seconds)
            )
            if self._cancelled:
                await self._send_cancels(cancel_sent)
            jobs = list(self._tracked.values())
            changes: list[JobChange] = []
            for chunk in chunks(jobs, opts.track_chunk_size):
                try:
                    outcomes = await self.handler.track(chunk)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - polling is retried on the next tick
                    log.warning(
                        "batch %s: tracking %d jobs failed: %s",
                        self.batch_id,
                        len(chunk),
                        _describe(exc),
                    )
                    continue
                changes.extend(_changes_from(chunk, outcomes))
            if changes:
                unchanged = 0
                lost = await self._writer.write(*changes)
                for change in changes:
                    job = self._tracked.get(change.job_id)
                    if job is None:
                        continue
                    if change.job_id in lost:
                        # Someone else moved the job (skipped it, another run resubmitted it):
                        # it is theirs now, stop tracking it here.
                        log.warning(
                            "job %s was changed by someone else; no longer tracked by this run",
                            job.id,
                        )
                        del self._tracked[change.job_id]
                        self._submitted_at.pop(change.job_id, None)
                    elif change.status in JOB_TERMINAL:
                        del self._tracked[change.job_id]
                        submitted = self._submitted_at.pop(change.job_id, None)
                        if submitted is not None:
                            self._durations.append(time.monotonic() - submitted)
                    else:
                        self._tracked[change.job_id] = _with_status(
                            job, change.status, job.workflow_id
                        )
            else:
                unchanged += 1
            await self._maybe_report()

    async def _send_cancels(self, already: set[int]) -> None:
        for job in list(self._tracked.values()):
            if job.id in already or job.status in (
                JobStatus.CANCEL_REQUESTED,
                JobStatus.CANCELLING,
            ):
                continue
            already.add(job.id)
            try:
                await self.handler.cancel(job)
            except Exception as exc:  # noqa: BLE001 - it may have finished meanwhile
                log.warning("job %s: cancel failed: %s", job.id, _describe(exc))

    # ---------------------------------------------------------------- control
    async def _control_loop(self) -> None:
        while True:
            await self._sleep(self.options.control_check_seconds)
            try:
                await self._control_once()
            except Exception as exc:  # noqa: BLE001 - a store blip must not stop steering
                log.warning(
                    "batch %s: control check failed (%s); retrying", self.batch_id, _describe(exc)
                )

    async def _control_once(self) -> None:
        batch = await asyncio.to_thread(self.store.get_batch, self.batch_id)
        if batch.status == BatchStatus.PAUSED and not self._paused:
            log.info(
                "batch %s paused: in-flight submissions finish, then the run stops", self.batch_id
            )
            self._paused = True
            self._stop_submitting = True
            self._more_jobs_wanted.set()
            self._tracked_changed.set()
        elif batch.status == BatchStatus.CANCELLED and not self._cancelled:
            log.info(
                "batch %s cancelled: no more submissions; in-flight workflows are cancelled",
                self.batch_id,
            )
            self._cancelled = True
            self._stop_submitting = True
            self._more_jobs_wanted.set()
            await asyncio.to_thread(self.store.cancel_unsubmitted_jobs, self.batch_id)
            self._tracked_changed.set()
        await self._maybe_report()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._sleep(self.options.lease_seconds / 3)
            try:
                await asyncio.to_thread(
                    self.store.renew_claims, self.owner, lease_seconds=self.options.lease_seconds
                )
            except Exception as exc:  # noqa: BLE001 - retried at the next beat, well within the lease
                log.warning(
                    "run %s: renewing claims failed (%s); retrying", self.owner, _describe(exc)
                )

    # --------------------------------------------------------------- progress
    async def _maybe_report(self) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress < self.options.progress_interval_seconds:
            return
        self._last_progress = now
        counts = await asyncio.to_thread(self.store.job_status_counts, self.batch_id)
        self._report(counts)

    def _report(self, counts: dict[str, int]) -> None:
        if self.on_progress is None:
            return
        by_state: dict[str, int] = {}
        for status, n in counts.items():
            if status != SKIPPED_KEY:
                state = _VIEW_STATE[JobStatus(status)]
                by_state[state] = by_state.get(state, 0) + n
        recent = self._durations[-500:]
        view = aggregate_counts(
            by_state, durations_seconds=recent, concurrency=self.options.concurrency
        )
        self.on_progress(
            ProgressReport(
                batch_id=self.batch_id,
                counts=counts,
                view=view,
                elapsed_seconds=time.monotonic() - self._started,
                submitted_this_run=self._submitted,
                tracked=len(self._tracked),
            )
        )


def _changes_from(jobs: list[JobRecord], outcomes: dict[int, TrackOutcome]) -> list[JobChange]:
    changes = []
    for job in jobs:
        outcome = outcomes.get(job.id)
        if outcome is None or outcome.status == job.status:
            continue
        if not can_transition_job(job.status, outcome.status):
            # A service answering out of order (e.g. RUNNING then QUEUED): keep what we know.
            log.warning(
                "job %s: ignoring %s after %s from the service", job.id, outcome.status, job.status
            )
            continue
        changes.append(
            JobChange(
                job_id=job.id,
                expected=job.status,
                status=outcome.status,
                service_status=outcome.service_status,
                progress=outcome.progress,
                details=outcome.details,
                last_error=(outcome.details or {}).get("error")
                if outcome.status == JobStatus.FAILED
                else None,
            )
        )
    return changes


def _with_status(job: JobRecord, status: JobStatus, workflow_id: str | None) -> JobRecord:
    return replace(job, status=status, workflow_id=workflow_id or job.workflow_id)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith("[") else f"{type(exc).__name__}: {text}"


async def run_batch(
    store: BatchStore,
    batch_id: int,
    handler: JobHandler,
    options: EngineOptions | None = None,
    **kwargs: Any,
) -> BatchRunResult:
    """Drive ``batch_id`` to a settled state (or until paused/cancelled) with ``handler``."""
    return await BatchExecutor(store, handler, options, **kwargs).run(batch_id)
