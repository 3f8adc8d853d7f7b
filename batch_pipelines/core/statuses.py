"""Job and batch statuses and the transitions between them.

Every family shares one vocabulary so that reconciliation, the store and the UI agree on
what a status means. A transition not listed here is a bug (or a service answering out of
order) and raises ``IllegalTransition`` instead of silently rewriting history.
"""

from __future__ import annotations

from enum import StrEnum

from batch_pipelines.core.errors import IllegalTransition


class JobStatus(StrEnum):
    """One attempt at a job configuration, as the Risk Modeler workflow engine sees it."""

    INITIATED = "INITIATED"
    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLING = "CANCELLING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"

    @classmethod
    def terminal(cls) -> frozenset[JobStatus]:
        return JOB_TERMINAL

    @property
    def is_terminal(self) -> bool:
        return self in JOB_TERMINAL


class BatchStatus(StrEnum):
    INITIATED = "INITIATED"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"

    @classmethod
    def terminal(cls) -> frozenset[BatchStatus]:
        return BATCH_TERMINAL

    @property
    def is_terminal(self) -> bool:
        return self in BATCH_TERMINAL


JOB_TERMINAL = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.ERROR}
)
BATCH_TERMINAL = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.ERROR}
)

# States the service reports while a workflow is alive, in their natural order. A poll may
# skip states (QUEUED straight to FINISHED) but never go back.
JOB_IN_FLIGHT: tuple[JobStatus, ...] = (
    JobStatus.SUBMITTED,
    JobStatus.QUEUED,
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.CANCEL_REQUESTED,
    JobStatus.CANCELLING,
)
_SERVICE_END = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED}


def _job_transitions() -> dict[JobStatus, frozenset[JobStatus]]:
    table: dict[JobStatus, set[JobStatus]] = {
        # Submission either reaches the service or fails; a job never submitted can be
        # cancelled outright. Sync calls answer FINISHED at once.
        JobStatus.INITIATED: {
            JobStatus.SUBMITTED,
            JobStatus.FINISHED,
            JobStatus.ERROR,
            JobStatus.CANCELLED,
        },
        # A submission error may be retried on the same job (same idempotency key).
        JobStatus.ERROR: {JobStatus.SUBMITTED, JobStatus.FINISHED, JobStatus.CANCELLED},
        JobStatus.FINISHED: set(),
        JobStatus.FAILED: set(),
        JobStatus.CANCELLED: set(),
    }
    for i, status in enumerate(JOB_IN_FLIGHT):
        later = set(JOB_IN_FLIGHT[i + 1 :]) | _SERVICE_END
        if status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELLING):
            later.discard(JobStatus.SUBMITTED)
        table[status] = later
    # A workflow being cancelled can still not have been picked up: the service then
    # reports it CANCELLED directly; it may also finish before the cancel lands.
    return {k: frozenset(v) for k, v in table.items()}


JOB_TRANSITIONS = _job_transitions()

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.INITIATED: frozenset(
        {BatchStatus.ACTIVE, BatchStatus.COMPLETED, BatchStatus.CANCELLED, BatchStatus.ERROR}
    ),
    BatchStatus.ACTIVE: frozenset(
        {
            BatchStatus.PAUSED,
            BatchStatus.COMPLETED,
            BatchStatus.FAILED,
            BatchStatus.CANCELLED,
            BatchStatus.ERROR,
        }
    ),
    BatchStatus.PAUSED: frozenset({BatchStatus.ACTIVE, BatchStatus.CANCELLED}),
    # Settled batches reopen to ACTIVE when jobs are resubmitted; history stays in the jobs.
    BatchStatus.COMPLETED: frozenset({BatchStatus.ACTIVE}),
    BatchStatus.FAILED: frozenset({BatchStatus.ACTIVE, BatchStatus.CANCELLED}),
    BatchStatus.ERROR: frozenset({BatchStatus.ACTIVE, BatchStatus.CANCELLED}),
    BatchStatus.CANCELLED: frozenset({BatchStatus.ACTIVE}),
}


def can_transition_job(current: JobStatus | str, new: JobStatus | str) -> bool:
    current, new = JobStatus(current), JobStatus(new)
    return current == new or new in JOB_TRANSITIONS[current]


def check_job_transition(current: JobStatus | str, new: JobStatus | str) -> JobStatus:
    """Return ``new`` as a JobStatus, raising IllegalTransition if it cannot follow ``current``."""
    if not can_transition_job(current, new):
        raise IllegalTransition(f"job status cannot go from {current} to {new}")
    return JobStatus(new)


def can_transition_batch(current: BatchStatus | str, new: BatchStatus | str) -> bool:
    current, new = BatchStatus(current), BatchStatus(new)
    return current == new or new in BATCH_TRANSITIONS[current]


def check_batch_transition(current: BatchStatus | str, new: BatchStatus | str) -> BatchStatus:
    if not can_transition_batch(current, new):
        raise IllegalTransition(f"batch status cannot go from {current} to {new}")
    return BatchStatus(new)


def job_status_from_service(raw: str) -> JobStatus:
    """Map a workflow status string from the service onto JobStatus.

    The Risk Modeler's inner job objects use other words ("Succeeded", "InProgress");
    unknown words raise so that a new service state is noticed rather than guessed.
    """
    value = raw.strip().upper().replace(" ", "_")
    aliases = {
        "SUCCEEDED": JobStatus.FINISHED,
        "SUCCESS": JobStatus.FINISHED,
        "COMPLETED": JobStatus.FINISHED,
        "INPROGRESS": JobStatus.RUNNING,
        "IN_PROGRESS": JobStatus.RUNNING,
        "CANCELED": JobStatus.CANCELLED,
    }
    if value in aliases:
        return aliases[value]
    try:
        return JobStatus(value)
    except ValueError:
        raise IllegalTransition(f"unknown workflow status from service: {raw!r}") from None
