"""Persistence of document jobs: the job, its items, per-phase results and checkpoints.

A document job is stored as one batch (family ``document_ai``, batch type = pipeline) with
its items, plus a ``document_jobs`` row for the lifecycle of seed 002. Everything a run
learns is written by ``write_checkpoint``: the results of up to checkpoint-frequency items
and their ledger entries in one transaction, so a result without its cost (or the other way
round) can never be stored, and an item whose result is stored is never redone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from batch_pipelines.core.costs import CostEntry, CostTotals
from batch_pipelines.core.errors import (
    BatchPipelinesError,
    ConfigurationError,
    IllegalTransition,
    NotFound,
    shorten,
)
from batch_pipelines.core.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from batch_pipelines.document_ai import batch_jobs
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, DocJobStatus, JobOptions
from batch_pipelines.document_ai.claims import ClaimState, claim_state, this_host
from batch_pipelines.document_ai.pipelines import PhaseSpec, PipelineTemplate
from batch_pipelines.store import schema as t
from batch_pipelines.store.batch_store import BatchStore, insert_cost_entries, utcnow
from batch_pipelines.store.database import insert_new_rows
from batch_pipelines.store.document_ai_tables import document_jobs

FAMILY = "document_ai"

# Phase result and item statuses.
COMPLETED = "COMPLETED"
FAILED = "FAILED"
PENDING = "PENDING"
IN_PROGRESS = "IN_PROGRESS"


class JobNotRunnable(BatchPipelinesError):
    """The job is not RUNNING, or another live runner holds it."""

    code = "BP-DOC-NOT-RUNNABLE"


# The shared batch row mirrors the job's status so `batch-pipelines batch list` reads right.
_BATCH_STATUS = {
    DocJobStatus.PENDING: "INITIATED",
    DocJobStatus.RUNNING: "ACTIVE",
    DocJobStatus.PAUSED: "PAUSED",
    DocJobStatus.COMPLETED: "COMPLETED",
    DocJobStatus.FAILED: "FAILED",
    DocJobStatus.CANCELLED: "CANCELLED",
}


def job_key(name: str, batch_id: int) -> str:
    """The job's partition key: readable, unique (the batch id), valid in Dagster."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "job"
    return f"{slug}-{batch_id}"


# A job's own phases are kept with its options (in the same JSON column, under this key).
_PHASES_KEY = "phases"


def _stored_options(options: JobOptions, phases: Sequence[PhaseSpec] | None) -> dict[str, Any]:
    stored = options.model_dump(mode="json")
    if phases:
        stored[_PHASES_KEY] = [p.model_dump(mode="json") for p in phases]
    return stored


# Built once: a checkpoint sets the status of the items it finished, many times a second.
_SET_ITEM_STATUS = (
    sa.update(t.items)
    .where(t.items.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(status=sa.bindparam("new_status"), updated_at=sa.bindparam("changed_at"))
)


@dataclass(frozen=True)
class DocumentJob:
    id: int
    batch_id: int
    key: str
    name: str
    project_id: str
    pipeline: str
    status: DocJobStatus
    options: JobOptions
    item_count: int
    generation: int
    current_phase: str | None
    status_reason: str | None
    runner_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The job's own phases (None: its pipeline template's).
    phases: tuple[PhaseSpec, ...] | None = None

    def template(self, pipeline: PipelineTemplate) -> PipelineTemplate:
        """The template this job runs: ``pipeline`` with the job's own phases, if any."""
        return batch_jobs.job_template(pipeline, self.phases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "project_id": self.project_id,
            "pipeline": self.pipeline,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "current_phase": self.current_phase,
            "items": self.item_count,
            "options": self.options.model_dump(mode="json"),
            "phases": [p.model_dump(mode="json") for p in self.phases] if self.phases else None,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class WorkItem:
    """One item waiting for a phase, with the text that phase works on."""

    item_id: int
    index: int
    content: Any


@dataclass(frozen=True)
class PhaseResult:
    item_id: int
    phase: str
    status: str  # COMPLETED | FAILED
    output: Any
    score: float | None
    attempts: int
    error: str | None
    latency_seconds: float
    passages: list[dict[str, Any]] | None = None
    first_phase: bool = False
    last_phase: bool = False


class DocumentJobStore:
    """Document jobs on top of the shared store (same engine, same transactions rules)."""

    def __init__(self, store: BatchStore):
        self.store = store
        self.engine = store.engine

    # ------------------------------------------------------------------ jobs
    def create_job(
        self,
        spec: BatchJobSpec,
        pipeline: PipelineTemplate,
        *,
        claimed_by: str | None = None,
        lease_seconds: float = 30.0,
    ) -> DocumentJob:
        """Store the job and all its items in one transaction (validated before: the spec).

        With ``auto_start`` the job is created RUNNING at generation 1, which is what the
        launcher sensor turns into a run - unless ``claimed_by`` names the runner that works
        it right away (`docs submit --run`): the job is then born claimed, so the launcher
        never sees it RUNNING without a worker.
        """
        if spec.pipeline != pipeline.name:
            raise ValueError(
                f"spec names pipeline {spec.pipeline!r}, got template {pipeline.name!r}"
            )
        now = utcnow()
        status = DocJobStatus.RUNNING if spec.options.auto_start else DocJobStatus.PENDING
        with self.engine.begin() as conn:
            batch_id = conn.execute(
                sa.insert(t.batches)
                .values(
                    family=FAMILY,
                    batch_type=pipeline.name,
                    name=spec.name,
                    status=_BATCH_STATUS[status],
                    options=spec.options.model_dump(mode="json"),
                    created_at=now,
                    updated_at=now,
                )
                .returning(t.batches.c.id)
            ).scalar_one()
            key = job_key(spec.name, batch_id)
            conn.execute(
                sa.update(t.batches).where(t.batches.c.id == batch_id).values(partition_key=key)
            )
            conn.execute(
                sa.insert(t.items),
                [
                    {
                        "batch_id": batch_id,
                        "item_index": item.index,
                        "key": str(item.metadata.get("id", item.index)),
                        "input": {"content": item.content, "metadata": item.metadata},
                        "status": PENDING,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for item in spec.items
                ],
            )
            job_id = conn.execute(
                sa.insert(document_jobs)
                .values(
                    batch_id=batch_id,
                    name=spec.name,
                    project_id=spec.project_id,
                    pipeline=pipeline.name,
                    status=status.value,
                    options=_stored_options(spec.options, spec.phases),
                    item_count=len(spec.items),
                    generation=1 if status == DocJobStatus.RUNNING else 0,
                    created_at=now,
                    updated_at=now,
                    started_at=now if status == DocJobStatus.RUNNING else None,
                    runner_id=claimed_by if status == DocJobStatus.RUNNING else None,
                    lease_expires_at=now + timedelta(seconds=lease_seconds)
                    if claimed_by and status == DocJobStatus.RUNNING
                    else None,
                )
                .returning(document_jobs.c.id)
            ).scalar_one()
        return self.get_job(job_id)

    def _select(self) -> sa.Select:
        return sa.select(document_jobs, t.batches.c.partition_key).join(
            t.batches, t.batches.c.id == document_jobs.c.batch_id
        )

    @staticmethod
    def _record(row: sa.Row) -> DocumentJob:
        m = row._mapping
        return DocumentJob(
            id=m["id"],
            batch_id=m["batch_id"],
            key=m["partition_key"],
            name=m["name"],
            project_id=m["project_id"],
            pipeline=m["pipeline"],
            status=DocJobStatus(m["status"]),
            options=JobOptions.model_validate(
                {k: v for k, v in m["options"].items() if k != _PHASES_KEY}
            ),
            item_count=m["item_count"],
            generation=m["generation"],
            current_phase=m["current_phase"],
            status_reason=m["status_reason"],
            runner_id=m["runner_id"],
            lease_expires_at=m["lease_expires_at"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
            phases=tuple(PhaseSpec.model_validate(p) for p in m["options"][_PHASES_KEY])
            if m["options"].get(_PHASES_KEY)
            else None,
        )

    def get_job(self, ref: int | str) -> DocumentJob:
        """A job by id (int or digits) or by key (its partition key)."""
        query = self._select()
        if isinstance(ref, int) or str(ref).isdigit():
            query = query.where(document_jobs.c.id == int(ref))
        else:
            query = query.where(t.batches.c.partition_key == str(ref), t.batches.c.family == FAMILY)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"document job {shorten(ref)} not found", details={"job": shorten(str(ref))}
            )
        return self._record(row)

    def list_jobs(
        self,
        *,
        project_id: str | None = None,
        status: DocJobStatus | str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        offset: int = 0,
    ) -> tuple[list[DocumentJob], int]:
        """One page of jobs (newest first) and the total matching the filters.

        A page holds 1 to ``MAX_PAGE_SIZE`` jobs: the bound is kept here, not only by the
        CLI, so no caller (the API later) can ask for the whole table at once.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE or offset < 0:
            raise ConfigurationError(
                f"page size must be 1-{MAX_PAGE_SIZE} and offset >= 0, got {limit} and {offset}",
                details={"limit": limit, "offset": offset},
            )
        conditions = []
        if project_id:
            conditions.append(document_jobs.c.project_id == project_id)
        if status:
            conditions.append(document_jobs.c.status == DocJobStatus(status).value)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(document_jobs).where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                self._select()
                .where(*conditions)
                .order_by(document_jobs.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [self._record(r) for r in rows], total

    def running_jobs(self) -> list[DocumentJob]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._select()
                .where(document_jobs.c.status == DocJobStatus.RUNNING.value)
                .order_by(document_jobs.c.id)
            ).all()
        return [self._record(r) for r in rows]

    # ------------------------------------------------------------------ lifecycle
    def apply_action(
        self,
        ref: int | str,
        action: str,
        reason: str | None = None,
        *,
        new_run: bool = True,
        claimed_by: str | None = None,
        lease_seconds: float = 30.0,
    ) -> DocumentJob:
        """Move a job by a user or run action (start, pause, resume, cancel, complete, fail).

        The rule is the pure one of ``batch_jobs``; the write is compare-and-set on the
        status read, so two actions racing cannot both apply. A start or resume asks for a
        new run (the generation goes up) unless ``new_run`` is False: Dagster retrying a
        failed run resumes the job inside that retry.

        ``claimed_by`` (start or resume only) names the runner that works the job right away
        (`docs start|resume --run`): the job turns RUNNING already claimed by it, in the same
        transaction, so the launcher never sees it RUNNING without a worker and starts no
        run that would race it (as ``create_job`` does for `docs submit --run`). A claim
        still held by a live worker (one stopping after a pause) is respected: the job is
        left as it was and ``JobNotRunnable`` says who holds it.
        """
        if action not in batch_jobs.ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if claimed_by and action not in ("start", "resume"):
            raise ValueError(f"a claim is taken only by start or resume, not {action!r}")
        job = self.get_job(ref)
        target = batch_jobs.next_status(action, job.status)
        now = utcnow()
        values: dict[str, Any] = {
            "status": target.value,
            "updated_at": now,
            "status_reason": reason,
        }
        conditions = [document_jobs.c.id == job.id, document_jobs.c.status == job.status.value]
        if claimed_by:
            state = self.claim_state(job)
            if not (state.free or state.dead or state.holder_id == claimed_by):
                raise JobNotRunnable(
                    f"cannot {action} job {job.key} here: {state.why}; wait for it to stop "
                    "or pause the job",
                    details={"runner": job.runner_id},
                )
            # Compare-and-set on the claim read too: a worker claiming it meanwhile wins.
            conditions.append(
                document_jobs.c.runner_id.is_(None)
                if job.runner_id is None
                else document_jobs.c.runner_id == job.runner_id
            )
            values["runner_id"] = claimed_by
            values["lease_expires_at"] = now + timedelta(seconds=lease_seconds)
        if action in ("start", "resume"):
            if new_run:
                values["generation"] = document_jobs.c.generation + 1
            values["started_at"] = job.started_at or now
            values["finished_at"] = None
        if target in (DocJobStatus.COMPLETED, DocJobStatus.FAILED, DocJobStatus.CANCELLED):
            values["finished_at"] = now
        with self.engine.begin() as conn:
            changed = conn.execute(
                sa.update(document_jobs).where(*conditions).values(**values)
            ).rowcount
            if changed != 1:
                current, holder = conn.execute(
                    sa.select(document_jobs.c.status, document_jobs.c.runner_id).where(
                        document_jobs.c.id == job.id
                    )
                ).one()
                if current == job.status.value:
                    raise JobNotRunnable(
                        f"cannot {action} job {job.key} here: another worker claimed it meanwhile",
                        details={"runner": holder},
                    )
                raise IllegalTransition(
                    f"cannot {action} job {job.key}: its status changed to {current} meanwhile",
                    details={"action": action, "status": current},
                )
            conn.execute(
                sa.update(t.batches)
                .where(t.batches.c.id == job.batch_id)
                .values(
                    status=_BATCH_STATUS[target],
                    updated_at=now,
                    settled_at=now if "finished_at" in values and values["finished_at"] else None,
                )
            )
        return self.get_job(job.id)

    def set_cost_budget(self, ref: int | str, budget: float | Decimal | None) -> DocumentJob:
        """Change the budget (e.g. to resume a job paused at its budget); validated like at creation."""
        job = self.get_job(ref)
        try:
            options = JobOptions.model_validate({**job.options.model_dump(), "cost_budget": budget})
        except ValidationError as exc:
            raise ConfigurationError(
                f"cost_budget: {exc.errors()[0]['msg']}", details={"job": job.key}
            ) from None
        stored, now = _stored_options(options, job.phases), utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(document_jobs)
                .where(document_jobs.c.id == job.id)
                .values(options=stored, updated_at=now)
            )
            # The job's batch row carries the options too (what batch listings show).
            conn.execute(
                sa.update(t.batches)
                .where(t.batches.c.id == job.batch_id)
                .values(options=stored, updated_at=now)
            )
        return self.get_job(job.id)

    def delete_job(self, ref: int | str) -> DocumentJob:
        """Remove a job with its items, results and ledger entries (never while RUNNING)."""
        job = self.get_job(ref)
        batch_jobs.check_delete(job.status)
        with self.engine.begin() as conn:
            gone = conn.execute(
                sa.delete(document_jobs).where(
                    document_jobs.c.id == job.id,
                    document_jobs.c.status != DocJobStatus.RUNNING.value,
                )
            ).rowcount
            if gone != 1:
                raise IllegalTransition(
                    f"cannot delete job {job.key}: it started running meanwhile",
                    details={"action": "delete", "status": "RUNNING"},
                )
            b = job.batch_id
            conn.execute(sa.delete(t.cost_entries).where(t.cost_entries.c.batch_id == b))
            conn.execute(sa.delete(t.phase_results).where(t.phase_results.c.batch_id == b))
            conn.execute(sa.delete(t.items).where(t.items.c.batch_id == b))
            conn.execute(sa.delete(t.batch_events).where(t.batch_events.c.batch_id == b))
            conn.execute(sa.delete(t.batches).where(t.batches.c.id == b))
        return job

    def set_current_phase(self, job_id: int, phase: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(document_jobs)
                .where(document_jobs.c.id == job_id)
                .values(current_phase=phase, updated_at=utcnow())
            )

    # ------------------------------------------------------------------ runner claim
    def claim_runner(self, job_id: int, runner_id: str, lease_seconds: float) -> bool:
        """Take (or renew) the right to work on a job; a dead runner's lease runs out."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                sa.update(document_jobs)
                .where(
                    document_jobs.c.id == job_id,
                    sa.or_(
                        document_jobs.c.runner_id.is_(None),
                        document_jobs.c.runner_id == runner_id,
                        document_jobs.c.lease_expires_at < now,
                    ),
                )
                .values(
                    runner_id=runner_id, lease_expires_at=now + timedelta(seconds=lease_seconds)
                )
            ).rowcount
        return changed == 1

    def claim_state(self, job: DocumentJob) -> ClaimState:
        """Whether ``job``'s claim is free, held by a live worker or left by a dead one."""
        return claim_state(job.runner_id, job.lease_expires_at, utcnow(), host=this_host())

    def take_over_claim(
        self, job_id: int, dead_runner_id: str | None, runner_id: str, lease_seconds: float
    ) -> bool:
        """Take the claim of a worker known dead; compare-and-set on its id, so of two
        successors only one gets it, and a claim renewed meanwhile is left alone."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                sa.update(document_jobs)
                .where(document_jobs.c.id == job_id, document_jobs.c.runner_id == dead_runner_id)
                .values(
                    runner_id=runner_id, lease_expires_at=now + timedelta(seconds=lease_seconds)
                )
            ).rowcount
        return changed == 1

    def fail_if_worker_died(self, ref: int | str) -> DocumentJob:
        """A RUNNING job whose worker died (killed, its claim left behind) is marked FAILED
        with the reason, so the user can resume it at once; any other job is returned as is."""
        job = self.get_job(ref)
        if job.status != DocJobStatus.RUNNING:
            return job
        state = self.claim_state(job)
        if not state.dead:
            return job
        try:
            job = self.apply_action(job.id, "fail", reason=f"{state.why}; resume it to go on")
        except IllegalTransition:
            return self.get_job(job.id)  # it moved meanwhile: that status stands
        self.release_runner(job.id, state.holder_id or "")
        return self.get_job(job.id)

    def release_runner(self, job_id: int, runner_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(document_jobs)
                .where(document_jobs.c.id == job_id, document_jobs.c.runner_id == runner_id)
                .values(runner_id=None, lease_expires_at=None)
            )

    def status_of(self, job_id: int) -> DocJobStatus:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(document_jobs.c.status).where(document_jobs.c.id == job_id)
            ).scalar_one()
        return DocJobStatus(value)

    # ------------------------------------------------------------------ work and checkpoints
    def pending_work(self, batch_id: int, phase: str, previous_phase: str | None) -> list[WorkItem]:
        """Items not yet done in ``phase``; after the first phase, only those the previous
        phase completed, with its output as their content."""
        it, pr = t.items, t.phase_results
        done = sa.select(pr.c.item_id).where(pr.c.batch_id == batch_id, pr.c.phase == phase)
        with self.engine.connect() as conn:
            if previous_phase is None:
                rows = conn.execute(
                    sa.select(it.c.id, it.c.item_index, it.c.input)
                    .where(it.c.batch_id == batch_id, it.c.id.not_in(done))
                    .order_by(it.c.item_index)
                ).all()
                return [WorkItem(r.id, r.item_index, r.input["content"]) for r in rows]
            prev = pr.alias("prev")
            rows = conn.execute(
                sa.select(it.c.id, it.c.item_index, prev.c.output)
                .join(prev, sa.and_(prev.c.item_id == it.c.id, prev.c.phase == previous_phase))
                .where(it.c.batch_id == batch_id, prev.c.status == COMPLETED, it.c.id.not_in(done))
                .order_by(it.c.item_index)
            ).all()
        return [WorkItem(r.id, r.item_index, r.output) for r in rows]

    def write_checkpoint(
        self, batch_id: int, results: Sequence[PhaseResult], entries: Sequence[CostEntry]
    ) -> int:
        """Store results and their ledger entries in one transaction; return new results.

        A result already stored (a second runner raced this one) is kept as it was.
        """
        if not results and not entries:
            return 0
        now = utcnow()
        with self.engine.begin() as conn:
            insert_cost_entries(conn, entries, count_new=False)
            if not results:
                return 0
            stmt = insert_new_rows(
                conn.dialect.name, t.phase_results, ("item_id", "phase"), "item_id"
            )
            rows = [
                {
                    "batch_id": batch_id,
                    "item_id": r.item_id,
                    "phase": r.phase,
                    "status": r.status,
                    "output": {"value": r.output, "passages": r.passages}
                    if r.passages
                    else r.output,
                    "score": r.score,
                    "attempts": r.attempts,
                    "error": r.error,
                    "latency_seconds": r.latency_seconds,
                    "created_at": now,
                }
                for r in results
            ]
            new = {row.item_id for row in conn.execute(stmt, rows).all()}
            by_status: dict[str, list[int]] = {}
            for r in results:
                if r.item_id in new:
                    status = (
                        FAILED
                        if r.status == FAILED
                        else (COMPLETED if r.last_phase else IN_PROGRESS)
                    )
                    if status == IN_PROGRESS and not r.first_phase:
                        continue  # already IN_PROGRESS since its first phase's checkpoint
                    by_status.setdefault(status, []).append(r.item_id)
            for status, ids in by_status.items():
                conn.execute(
                    _SET_ITEM_STATUS, {"ids": ids, "new_status": status, "changed_at": now}
                )
        return len(new)

    # ------------------------------------------------------------------ reading results
    def phase_counts(self, batch_id: int) -> dict[str, dict[str, int]]:
        """phase -> {COMPLETED: n, FAILED: n}."""
        pr = t.phase_results
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pr.c.phase, pr.c.status, sa.func.count())
                .where(pr.c.batch_id == batch_id)
                .group_by(pr.c.phase, pr.c.status)
            ).all()
        counts: dict[str, dict[str, int]] = {}
        for phase, status, n in rows:
            counts.setdefault(phase, {})[status] = n
        return counts

    def settled_items(self, batch_id: int) -> int:
        """Items done or failed in the pipeline (nothing is left to do for them)."""
        counts = self.item_status_counts(batch_id)
        return counts.get(COMPLETED, 0) + counts.get(FAILED, 0)

    def item_status_counts(self, batch_id: int) -> dict[str, int]:
        it = t.items
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(it.c.status, sa.func.count())
                .where(it.c.batch_id == batch_id)
                .group_by(it.c.status)
            ).all()
        return {status: n for status, n in rows}

    def phase_rows(
        self,
        batch_id: int,
        phases: Iterable[str] | None = None,
        item_ids: Iterable[int] | None = None,
    ) -> list[dict[str, Any]]:
        pr = t.phase_results
        query = sa.select(pr).where(pr.c.batch_id == batch_id)
        if phases is not None:
            query = query.where(pr.c.phase.in_(list(phases)))
        if item_ids is not None:
            query = query.where(pr.c.item_id.in_(list(item_ids)))
        with self.engine.connect() as conn:
            return [
                dict(r._mapping) for r in conn.execute(query.order_by(pr.c.item_id, pr.c.id)).all()
            ]

    def item_latency_mean(self, batch_id: int) -> float | None:
        """Mean seconds an item has spent in model calls so far, over its phases (None
        before any result): the observed duration the ETA extrapolates from."""
        pr = t.phase_results
        with self.engine.connect() as conn:
            total, items = conn.execute(
                sa.select(
                    sa.func.sum(pr.c.latency_seconds), sa.func.count(sa.distinct(pr.c.item_id))
                ).where(pr.c.batch_id == batch_id)
            ).one()
        return float(total or 0.0) / items if items else None

    def items(
        self, batch_id: int, *, offset: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        it = t.items
        query = (
            sa.select(it).where(it.c.batch_id == batch_id).order_by(it.c.item_index).offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def cost_by_item(self, batch_id: int, item_ids: Iterable[int]) -> dict[int, Decimal]:
        """Ledger cost per item for some items of a job (one grouped query)."""
        ce = t.cost_entries
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ce.c.item_id, self.store.ledger_cost_sum())
                .where(ce.c.batch_id == batch_id, ce.c.item_id.in_(list(item_ids)))
                .group_by(ce.c.item_id)
            ).all()
        return {item_id: self.store.ledger_cost(total) for item_id, total in rows}

    def cost_totals(self, batch_id: int) -> CostTotals:
        return self.store.cost_totals(batch_id)
