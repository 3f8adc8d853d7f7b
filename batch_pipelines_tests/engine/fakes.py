"""An in-memory handler whose behaviour each test scripts, for engine-only tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from batch_pipelines.clients.http import RateLimited, ServerError
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.handlers import SubmitOutcome, TrackOutcome
from batch_pipelines.store.batch_store import JobRecord


class ScriptedHandler:
    """Sync or async handler; ``fail_keys`` raise permanently, ``flaky_keys`` fail once."""

    def __init__(
        self,
        *,
        execution: str = "sync",
        delay: float = 0.0,
        fail_keys: set[str] = frozenset(),
        flaky_keys: set[str] = frozenset(),
        workflow_failed_keys: set[str] = frozenset(),
        polls_to_finish: int = 2,
        on_submit: Callable[[JobRecord], None] | None = None,
    ):
        self.execution = execution
        self.delay = delay
        self.fail_keys = set(fail_keys)
        self.flaky_keys = set(flaky_keys)
        self.workflow_failed_keys = set(workflow_failed_keys)
        self.polls_to_finish = polls_to_finish
        self.on_submit = on_submit
        self.submissions: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.polls: dict[int, int] = {}
        self.cancelled: list[int] = []

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_submit:
                self.on_submit(job)
            await asyncio.sleep(self.delay)
            self.submissions.append(job.key)
            if job.key in self.flaky_keys:
                self.flaky_keys.discard(job.key)
                raise RateLimited("slow down", status=429, retry_after=0.0)
            if job.key in self.fail_keys:
                raise ValueError(f"cannot submit {job.key}")
            if self.execution == "sync":
                return SubmitOutcome(status=JobStatus.FINISHED, response={"ok": True})
            return SubmitOutcome(status=JobStatus.SUBMITTED, workflow_id=f"wf-{job.id}")
        finally:
            self.in_flight -= 1

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]:
        out = {}
        for job in jobs:
            n = self.polls[job.id] = self.polls.get(job.id, 0) + 1
            if job.id in self.cancelled:
                out[job.id] = TrackOutcome(JobStatus.CANCELLED, "CANCELLED")
            elif n < self.polls_to_finish:
                out[job.id] = TrackOutcome(JobStatus.RUNNING, "RUNNING", progress=50.0)
            elif job.key in self.workflow_failed_keys:
                out[job.id] = TrackOutcome(
                    JobStatus.FAILED, "FAILED", details={"error": "model crashed"}
                )
            else:
                out[job.id] = TrackOutcome(JobStatus.FINISHED, "FINISHED", progress=100.0)
        return out

    async def cancel(self, job: JobRecord) -> None:
        self.cancelled.append(job.id)


class BrokenTracker(ScriptedHandler):
    """Tracking fails the first ``failures`` times, as a flaky service would."""

    def __init__(self, failures: int, **kw):
        super().__init__(execution="async", **kw)
        self.failures = failures

    async def track(self, jobs):
        if self.failures:
            self.failures -= 1
            raise ServerError("boom", status=503)
        return await super().track(jobs)
