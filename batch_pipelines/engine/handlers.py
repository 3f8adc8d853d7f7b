"""What a batch type tells the engine: how to submit one job and how to track many.

Handlers are the only family-specific code the engine runs. They talk to the outside world
through clients and return plain outcomes; the engine owns ordering, durability, retries,
concurrency and reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.store.batch_store import JobRecord


@dataclass(frozen=True)
class SubmitOutcome:
    """Result of one submission: SUBMITTED (async, to be tracked) or a terminal status (sync)."""

    status: JobStatus
    workflow_id: str | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class TrackOutcome:
    status: JobStatus
    service_status: str
    progress: float | None = None
    details: dict[str, Any] | None = field(default=None)


@runtime_checkable
class JobHandler(Protocol):
    """Submits and tracks the jobs of one batch type.

    ``submit`` must send ``job.request_id`` as the service's idempotency key: the engine may
    call it again for the same job after a crash, and the service must then replay.
    """

    execution: Literal["sync", "async"]

    async def submit(self, job: JobRecord) -> SubmitOutcome: ...

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]: ...

    async def cancel(self, job: JobRecord) -> None: ...
