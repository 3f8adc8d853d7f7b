"""Persistence of batches, job configurations, jobs and their history.

The store is the only place the engine and the families read or write state, and every
multi-row change (a batch with its jobs, a resubmission, a reconciliation with its log
row) is one transaction. Two processes working on one batch coordinate through row-level
claims with leases; a job resent after a lease ran out carries the same idempotency key, so
the service replays instead of accepting it twice.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from batch_pipelines.core.costs import (
    COST_QUANTUM,
    CostEntry,
    CostTotals,
    Usage,
    dedupe_entries,
    summarize,
)
from batch_pipelines.core.errors import BatchError, CycleNotActive, JobError, NotFound
from batch_pipelines.core.reconciliation import (
    SKIPPED_KEY,
    ConfigurationView,
    JobView,
    Reconciliation,
    reconcile,
)
from batch_pipelines.core.statuses import (
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
    can_transition_batch,
    check_batch_transition,
    check_job_transition,
)
from batch_pipelines.store import schema as t
from batch_pipelines.store.database import insert_new_rows, migrate, open_engine


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CycleRecord:
    id: int
    name: str
    status: str  # ACTIVE | ARCHIVED
    created_at: datetime
    archived_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.status == CYCLE_ACTIVE


@dataclass(frozen=True)
class ConfigurationRecord:
    id: int
    cycle_id: int | None
    family: str
    name: str
    source: str | None
    checksum: str | None
    content: dict[str, Any]
    created_at: datetime


CYCLE_ACTIVE = "ACTIVE"
CYCLE_ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class BatchRecord:
    id: int
    family: str
    batch_type: str
    name: str | None
    cycle_id: int | None
    configuration_id: int | None
    partition_key: str | None
    status: BatchStatus
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None


@dataclass(frozen=True)
class JobConfigurationRecord:
    id: int
    batch_id: int
    key: str
    data: dict[str, Any]
    skipped: bool
    skipped_reason: str | None
    override_reason: str | None
    parent_job_configuration_id: int | None
    overridden_by_job_configuration_id: int | None


@dataclass(frozen=True)
class JobRecord:
    """A job with the key and data of its configuration, which is what handlers need."""

    id: int
    batch_id: int
    job_configuration_id: int
    parent_job_id: int | None
    status: JobStatus
    skipped: bool
    skipped_reason: str | None
    request_id: str
    workflow_id: str | None
    submission_request: dict[str, Any] | None
    submission_response: dict[str, Any] | None
    last_error: str | None
    submit_attempts: int
    created_at: datetime
    submit_requested_at: datetime | None
    submitted_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    key: str
    configuration: dict[str, Any]

    @property
    def duration_seconds(self) -> float | None:
        start = self.submitted_at or self.submit_requested_at
        if start is None or self.finished_at is None:
            return None
        return (self.finished_at - start).total_seconds()


@dataclass(frozen=True)
class JobChange:
    """One observed change of a job, applied only if the job is still in ``expected``.

    The compare-and-set makes concurrent trackers harmless: whichever writes first wins and
    the other's stale change is dropped instead of moving a job backwards.
    """

    job_id: int
    expected: JobStatus
    status: JobStatus
    workflow_id: str | None = None
    submission_request: dict[str, Any] | None = None
    submission_response: dict[str, Any] | None = None
    last_error: str | None = None
    service_status: str | None = None  # set when the change comes from tracking: logged
    progress: float | None = None
    details: dict[str, Any] | None = field(default=None)
    release_claim: bool = False


_JOB_COLUMNS = [c for c in t.jobs.c]


def _record(cls: type, row: Any, **derived: Any) -> Any:
    """A record dataclass from a row: every field read by name, except those given."""
    m = row._mapping
    return cls(**{name: m[name] for name in _field_names(cls) if name not in derived}, **derived)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # ``dataclasses.fields`` builds a tuple per call; claims read hundreds of rows each.
    return tuple(f.name for f in fields(cls))


def _job_record(row: Any) -> JobRecord:
    m = row._mapping
    return _record(
        JobRecord,
        row,
        status=JobStatus(m["status"]),
        skipped=bool(m["skipped"]),
        key=m["config_key"],
        configuration=m["config_data"],
    )


def _batch_record(row: Any) -> BatchRecord:
    m = row._mapping
    return _record(BatchRecord, row, status=BatchStatus(m["status"]), options=m["options"] or {})


def _configuration_record(row: Any) -> JobConfigurationRecord:
    return _record(JobConfigurationRecord, row, skipped=bool(row._mapping["skipped"]))


def _new_request_id() -> str:
    # Assigned when the job row is created, so the key exists durably before any call and
    # every retry or resumed run of this job sends the same one.
    return str(uuid.uuid4())


def insert_cost_entries(
    conn: sa.Connection, entries: Sequence[CostEntry], *, count_new: bool = True
) -> int | None:
    """Insert ledger entries within the caller's transaction; return how many were new
    (None with ``count_new=False``, which spares the RETURNING round trip: checkpoints,
    many a second, do not need the count).

    A ``call_key`` already in the ledger is skipped (``ON CONFLICT DO NOTHING``), so a
    resumed run may record the same call again without billing it twice. Entries repeated
    within ``entries`` must be identical (see ``dedupe_entries``).
    """
    unique = dedupe_entries(entries)
    if not unique:
        return 0
    now = utcnow()
    rows = [
        {
            "call_key": e.call_key,
            # Indexing a project's reference documents is billed to no batch.
            "batch_id": int(e.batch_id) if e.batch_id is not None else None,
            "phase": e.phase,
            # The ledger column is the items table's integer id.
            "item_id": int(e.item_id) if e.item_id is not None else None,
            "model": e.model,
            "kind": e.kind,
            "prompt_tokens": e.usage.prompt_tokens,
            "completion_tokens": e.usage.completion_tokens,
            "estimated": e.usage.estimated,
            "cost": e.cost,
            "created_at": now,
        }
        for e in unique
    ]
    if not count_new:
        conn.execute(insert_new_rows(conn.dialect.name, t.cost_entries, ("call_key",)), rows)
        return None
    stmt = insert_new_rows(conn.dialect.name, t.cost_entries, ("call_key",), "id")
    # RETURNING yields only the rows actually inserted, on both backends.
    return len(conn.execute(stmt, rows).all())


class BatchStore:
    """Batches, job configurations, jobs, tracking and reconciliation history."""

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: sa.Engine | None = None,
        setting: str = "BATCH_PIPELINES_DATABASE_URL",
    ):
        """Open (and migrate) the store at ``url``; one that cannot be reached is a
        StoreError naming ``setting``, where the URL came from."""
        if engine is None:
            self.engine = open_engine(url, setting)
        else:
            self.engine = engine
            migrate(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ cycles & configurations
    def register_cycle(self, name: str) -> CycleRecord:
        """Register a new cycle as the active one; the previously active cycle is archived.

        Registering an existing name is refused: a cycle's history is never reused.
        """
        name = name.strip()
        if not name:
            raise BatchError("a cycle needs a name")
        now = utcnow()
        c = t.cycles
        with self.engine.begin() as conn:
            if conn.execute(sa.select(c.c.id).where(c.c.name == name)).first() is not None:
                raise BatchError(f"cycle {name!r} already exists", code="BP-CYCLE-EXISTS")
            conn.execute(
                c.update()
                .where(c.c.status == CYCLE_ACTIVE)
                .values(status=CYCLE_ARCHIVED, archived_at=now)
            )
            conn.execute(c.insert().values(name=name, status=CYCLE_ACTIVE, created_at=now))
        return self.get_cycle(name)

    def get_cycle(self, name: str) -> CycleRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.cycles).where(t.cycles.c.name == name)).first()
        if row is None:
            raise NotFound(f"cycle {name!r} does not exist")
        return CycleRecord(**row._mapping)

    def active_cycle(self) -> CycleRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.cycles).where(t.cycles.c.status == CYCLE_ACTIVE)).first()
        return CycleRecord(**row._mapping) if row else None

    def list_cycles(self) -> list[CycleRecord]:
        with self.engine.connect() as conn:
            return [
                CycleRecord(**r._mapping)
                for r in conn.execute(sa.select(t.cycles).order_by(t.cycles.c.id))
            ]

    def require_active_cycle(self, name: str) -> CycleRecord:
        cycle = self.get_cycle(name)
        if not cycle.is_active:
            raise CycleNotActive(
                f"cycle {name!r} is not active (it was archived); only the active cycle accepts work"
            )
        return cycle

    def save_configuration(
        self,
        *,
        cycle_name: str,
        family: str,
        name: str,
        content: Mapping[str, Any],
        source: str | None = None,
        checksum: str | None = None,
    ) -> ConfigurationRecord:
        """Store the cycle's configuration, replacing an earlier one only while no batch uses it."""
        now = utcnow()
        with self.engine.begin() as conn:
            cycle = self.require_active_cycle(cycle_name)
            cfg = t.configurations
            existing = conn.execute(
                sa.select(cfg.c.id).where(cfg.c.cycle_id == cycle.id, cfg.c.family == family)
            ).scalar_one_or_none()
            values = dict(
                name=name, source=source, checksum=checksum, content=dict(content), created_at=now
            )
            if existing is None:
                conn.execute(cfg.insert().values(cycle_id=cycle.id, family=family, **values))
            else:
                used = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.batches)
                    .where(t.batches.c.configuration_id == existing)
                ).scalar_one()
                if used:
                    raise BatchError(
                        f"the configuration of cycle {cycle_name!r} cannot be replaced: {used} batches exist for it",
                        code="BP-CONFIGURATION-IN-USE",
                    )
                conn.execute(cfg.update().where(cfg.c.id == existing).values(**values))
        found = self.configuration_for_cycle(cycle_name, family)
        assert found is not None
        return found

    def configuration_for_cycle(self, cycle_name: str, family: str) -> ConfigurationRecord | None:
        cfg = t.configurations
        q = (
            sa.select(cfg)
            .join(t.cycles, t.cycles.c.id == cfg.c.cycle_id)
            .where(t.cycles.c.name == cycle_name, cfg.c.family == family)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return ConfigurationRecord(**row._mapping) if row else None

    # ------------------------------------------------------------------ batches
    def create_batch(
        self,
        *,
        family: str,
        batch_type: str,
        job_configurations: Sequence[Mapping[str, Any]],
        name: str | None = None,
        cycle_id: int | None = None,
        configuration_id: int | None = None,
        partition_key: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Create a batch, one configuration per entry and one INITIATED job each, atomically.

        Each entry is ``{"key": str, "data": {...}}`` (``data`` defaults to the entry itself).
        """
        now = utcnow()
        keys = [str(c["key"]) for c in job_configurations]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise BatchError(f"duplicate job configuration keys in batch: {dupes[:5]}")
        with self.engine.begin() as conn:
            batch_id = conn.execute(
                t.batches.insert()
                .values(
                    family=family,
                    batch_type=batch_type,
                    name=name,
                    cycle_id=cycle_id,
                    configuration_id=configuration_id,
                    partition_key=partition_key,
                    status=BatchStatus.INITIATED.value,
                    options=dict(options or {}),
                    created_at=now,
                    updated_at=now,
                )
                .returning(t.batches.c.id)
            ).scalar_one()
            if job_configurations:
                config_rows = [
                    {
                        "batch_id": batch_id,
                        "key": str(c["key"]),
                        "data": dict(c.get("data", c)),
                        "skipped": False,
                        "created_at": now,
                    }
                    for c in job_configurations
                ]
                config_ids = (
                    conn.execute(
                        t.job_configurations.insert().returning(
                            t.job_configurations.c.id, sort_by_parameter_order=True
                        ),
                        config_rows,
                    )
                    .scalars()
                    .all()
                )
                conn.execute(
                    t.jobs.insert(),
                    [self._new_job_row(batch_id, cid, now) for cid in config_ids],
                )
        return batch_id

    @staticmethod
    def _new_job_row(
        batch_id: int, configuration_id: int, now: datetime, parent: int | None = None
    ) -> dict:
        return {
            "batch_id": batch_id,
            "job_configuration_id": configuration_id,
            "parent_job_id": parent,
            "status": JobStatus.INITIATED.value,
            "skipped": False,
            "request_id": _new_request_id(),
            "submit_attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

    def find_or_create_batch(
        self, *, family: str, batch_type: str, partition_key: str, **kwargs: Any
    ) -> int:
        """The partition's batch of this type, created with ``create_batch`` if none exists.

        Safe under concurrency: the unique (family, batch_type, partition_key) constraint
        makes a second creator fail, and it then reads the winner's batch.
        """
        existing = self.find_batches(
            family=family, batch_type=batch_type, partition_key=partition_key
        )
        if existing:
            return existing[0].id
        try:
            return self.create_batch(
                family=family, batch_type=batch_type, partition_key=partition_key, **kwargs
            )
        except sa.exc.IntegrityError:
            (winner,) = self.find_batches(
                family=family, batch_type=batch_type, partition_key=partition_key
            )
            return winner.id

    def get_batch(self, batch_id: int) -> BatchRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.batches).where(t.batches.c.id == batch_id)).first()
        if row is None:
            raise NotFound(f"batch {batch_id} does not exist")
        return _batch_record(row)

    def find_batches(
        self,
        *,
        family: str | None = None,
        batch_type: str | None = None,
        partition_key: str | None = None,
    ) -> list[BatchRecord]:
        q = sa.select(t.batches).order_by(t.batches.c.id)
        if family is not None:
            q = q.where(t.batches.c.family == family)
        if batch_type is not None:
            q = q.where(t.batches.c.batch_type == batch_type)
        if partition_key is not None:
            q = q.where(t.batches.c.partition_key == partition_key)
        with self.engine.connect() as conn:
            return [_batch_record(r) for r in conn.execute(q)]

    def set_batch_status(self, batch_id: int, status: BatchStatus | str) -> BatchRecord:
        """Move a batch to ``status``; an illegal transition raises IllegalTransition."""
        status = BatchStatus(status)
        with self.engine.begin() as conn:
            current = self._lock_batch(conn, batch_id)
            check_batch_transition(current, status)
            self._write_batch_status(conn, batch_id, status)
        return self.get_batch(batch_id)

    def _lock_batch(self, conn: sa.Connection, batch_id: int) -> BatchStatus:
        q = sa.select(t.batches.c.status).where(t.batches.c.id == batch_id)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        status = conn.execute(q).scalar_one_or_none()
        if status is None:
            raise NotFound(f"batch {batch_id} does not exist")
        return BatchStatus(status)

    @staticmethod
    def _write_batch_status(conn: sa.Connection, batch_id: int, status: BatchStatus) -> None:
        now = utcnow()
        conn.execute(
            t.batches.update()
            .where(t.batches.c.id == batch_id)
            .values(
                status=status.value, updated_at=now, settled_at=now if status.is_terminal else None
            )
        )

    def add_batch_event(
        self, batch_id: int, message: str, *, level: str = "INFO", data: dict | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.batch_events.insert().values(
                    batch_id=batch_id, level=level, message=message, data=data, created_at=utcnow()
                )
            )

    def add_batch_event_once(
        self,
        batch_id: int,
        message: str,
        *,
        key: str,
        level: str = "INFO",
        data: dict | None = None,
    ) -> bool:
        """Add the event unless the batch already has one with this ``message`` and ``key``
        (kept as ``data["key"]``); True when this call added it.

        Callers that must act once per fact (one Teams card per failure, however many places
        notice it) claim the fact here first. The batch row is written before the check, so
        concurrent claimers of one batch queue behind each other: a row lock on PostgreSQL,
        the database's write lock on SQLite.
        """
        with self.engine.begin() as conn:
            touched = conn.execute(
                t.batches.update()
                .where(t.batches.c.id == batch_id)
                .values(updated_at=t.batches.c.updated_at)
            ).rowcount
            if touched != 1:
                raise NotFound(f"batch {batch_id} does not exist")
            earlier = conn.execute(
                sa.select(t.batch_events.c.data).where(
                    t.batch_events.c.batch_id == batch_id, t.batch_events.c.message == message
                )
            ).scalars()
            if any(isinstance(d, dict) and d.get("key") == key for d in earlier):
                return False
            conn.execute(
                t.batch_events.insert().values(
                    batch_id=batch_id,
                    level=level,
                    message=message,
                    data={**(data or {}), "key": key},
                    created_at=utcnow(),
                )
            )
        return True

    def batch_events(self, batch_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.batch_events)
                .where(t.batch_events.c.batch_id == batch_id)
                .order_by(t.batch_events.c.id)
            )
            return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------- configurations & jobs
    def list_job_configurations(self, batch_id: int) -> list[JobConfigurationRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.job_configurations)
                .where(t.job_configurations.c.batch_id == batch_id)
                .order_by(t.job_configurations.c.id)
            )
            return [_configuration_record(r) for r in rows]

    def _jobs_query(self) -> sa.Select:
        jc = t.job_configurations
        return sa.select(
            *_JOB_COLUMNS, jc.c.key.label("config_key"), jc.c.data.label("config_data")
        ).join(jc, jc.c.id == t.jobs.c.job_configuration_id)

    def list_jobs(
        self,
        batch_id: int,
        *,
        skipped: bool | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[JobRecord]:
        q = self._jobs_query().where(t.jobs.c.batch_id == batch_id).order_by(t.jobs.c.id)
        if skipped is not None:
            q = q.where(t.jobs.c.skipped == skipped)
        if statuses is not None:
            q = q.where(t.jobs.c.status.in_([JobStatus(s).value for s in statuses]))
        if ids is not None:
            q = q.where(t.jobs.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [_job_record(r) for r in conn.execute(q)]

    def get_job(self, job_id: int) -> JobRecord:
        with self.engine.connect() as conn:
            row = conn.execute(self._jobs_query().where(t.jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return _job_record(row)

    def job_status_counts(self, batch_id: int) -> dict[str, int]:
        """Non-skipped jobs by status, skipped ones under SKIPPED (one GROUP BY)."""
        status = sa.case((t.jobs.c.skipped.is_(True), SKIPPED_KEY), else_=t.jobs.c.status)
        q = (
            sa.select(status.label("s"), sa.func.count())
            .where(t.jobs.c.batch_id == batch_id)
            .group_by(status)
        )
        with self.engine.connect() as conn:
            return {s: n for s, n in conn.execute(q)}

    def tracking_log(self, job_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.job_tracking_log)
                .where(t.job_tracking_log.c.job_id == job_id)
                .order_by(t.job_tracking_log.c.id)
            )
            return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------------ claims
    def claim_jobs(
        self,
        batch_id: int,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        errored_before: datetime | None = None,
        now: datetime | None = None,
    ) -> list[JobRecord]:
        """Claim up to ``limit`` submittable jobs for ``owner`` and record the intent to submit.

        INITIATED jobs are claimable, and ERROR jobs (a failed submission, resubmitted on
        the same job with the same key) last changed before ``errored_before``: a run passes
        its own start so that it does not retry, in a loop, the errors it just recorded.
        A job is claimable when nobody holds it or its lease has run out (its owner died).
        Claiming stamps ``submit_requested_at`` (first time only) and counts the attempt in
        the same statement, so the intent is durable before any call is made. On PostgreSQL
        the candidate rows are locked with SKIP LOCKED so concurrent claimers never block
        each other or take the same row; on SQLite the single UPDATE is atomic.
        """
        now = now or utcnow()
        j = t.jobs
        candidates = (
            sa.select(j.c.id)
            .where(
                j.c.batch_id == batch_id,
                j.c.skipped.is_(False),
                # The IN lets the (batch_id, status) index narrow the scan; the OR then
                # keeps only errors recorded before this run started.
                j.c.status.in_([JobStatus.INITIATED.value, JobStatus.ERROR.value]),
                sa.or_(
                    j.c.status == JobStatus.INITIATED.value,
                    j.c.updated_at < (errored_before or now),
                ),
                # Never the caller's own live claims: those jobs are already in its hands.
                sa.or_(j.c.claimed_by.is_(None), j.c.claim_expires_at < now),
            )
            .order_by(j.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        stmt = (
            j.update()
            .where(j.c.id.in_(candidates.scalar_subquery()))
            .values(
                claimed_by=owner,
                claim_expires_at=now + timedelta(seconds=lease_seconds),
                submit_requested_at=sa.func.coalesce(j.c.submit_requested_at, now),
                submit_attempts=j.c.submit_attempts + 1,
                updated_at=now,
            )
            .returning(j.c.id)
        )
        with self.engine.begin() as conn:
            ids = list(conn.execute(stmt).scalars())
        if not ids:
            return []
        return self.list_jobs(batch_id, ids=ids)

    def count_claimed_by_others(self, batch_id: int, owner: str) -> int:
        """Submittable jobs another run holds a claim on (live, or dead until its lease ends)."""
        j = t.jobs
        q = sa.select(sa.func.count()).where(
            j.c.batch_id == batch_id,
            j.c.skipped.is_(False),
            j.c.status.in_([JobStatus.INITIATED.value, JobStatus.ERROR.value]),
            j.c.claimed_by.is_not(None),
            j.c.claimed_by != owner,
        )
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def cancel_unsubmitted_jobs(self, batch_id: int) -> int:
        """Cancel jobs never submitted and not held by a live claim (a cancelled batch)."""
        now = utcnow()
        j = t.jobs
        with self.engine.begin() as conn:
            return conn.execute(
                j.update()
                .where(
                    j.c.batch_id == batch_id,
                    j.c.skipped.is_(False),
                    j.c.status.in_([JobStatus.INITIATED.value, JobStatus.ERROR.value]),
                    sa.or_(j.c.claimed_by.is_(None), j.c.claim_expires_at < now),
                )
                .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
            ).rowcount

    def renew_claims(self, owner: str, *, lease_seconds: float) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            return conn.execute(
                t.jobs.update()
                .where(t.jobs.c.claimed_by == owner)
                .values(claim_expires_at=now + timedelta(seconds=lease_seconds))
            ).rowcount

    def release_claims(self, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.claimed_by == owner)
                .values(claimed_by=None, claim_expires_at=None)
            )

    # ----------------------------------------------------------------- changes
    def apply_job_changes(self, changes: Sequence[JobChange]) -> set[int]:
        """Apply many job changes in one transaction (the engine's group commit); return
        the ids of jobs whose change was not applied.

        Every change is checked against the legal transitions first, so an illegal one
        raises before anything is written. Each UPDATE only applies while the job is still
        in the expected status (compare-and-set): a job someone else moved meanwhile (a
        user skipped or cancelled it, another run took it over) keeps their status, and is
        reported back so that the caller stops acting on what it believed. Tracked
        observations are appended to the tracking log.
        """
        if not changes:
            return set()
        for c in changes:
            check_job_transition(c.expected, c.status)
        now = utcnow()
        j = t.jobs
        params = []
        logs = []
        for c in changes:
            terminal = c.status in JOB_TERMINAL
            params.append(
                {
                    "b_id": c.job_id,
                    "b_expected": c.expected.value,
                    "b_status": c.status.value,
                    "b_workflow_id": c.workflow_id,
                    "b_request": c.submission_request,
                    "b_response": c.submission_response,
                    "b_error": c.last_error,
                    "b_submitted_at": now
                    if c.status == JobStatus.SUBMITTED
                    or (
                        c.expected in (JobStatus.INITIATED, JobStatus.ERROR)
                        and c.status == JobStatus.FINISHED
                    )
                    else None,
                    "b_tracked_at": now if c.service_status is not None else None,
                    "b_finished_at": now if terminal else None,
                    "b_release": c.release_claim or terminal,
                    "b_now": now,
                }
            )
            if c.service_status is not None:
                logs.append(
                    {
                        "job_id": c.job_id,
                        "status": c.status.value,
                        "service_status": c.service_status,
                        "progress": c.progress,
                        "details": c.details,
                        "tracked_at": now,
                    }
                )
        bp = sa.bindparam
        release = bp("b_release", type_=sa.Boolean)
        stmt = (
            j.update()
            .where(j.c.id == bp("b_id"), j.c.status == bp("b_expected"))
            .values(
                status=bp("b_status"),
                workflow_id=sa.func.coalesce(bp("b_workflow_id", type_=sa.String), j.c.workflow_id),
                submission_request=sa.func.coalesce(
                    bp("b_request", type_=sa.JSON), j.c.submission_request
                ),
                submission_response=sa.func.coalesce(
                    bp("b_response", type_=sa.JSON), j.c.submission_response
                ),
                last_error=sa.func.coalesce(bp("b_error", type_=sa.Text), j.c.last_error),
                submitted_at=sa.func.coalesce(
                    j.c.submitted_at, bp("b_submitted_at", type_=t.UTCDateTime())
                ),
                last_tracked_at=sa.func.coalesce(
                    bp("b_tracked_at", type_=t.UTCDateTime()), j.c.last_tracked_at
                ),
                finished_at=sa.func.coalesce(
                    bp("b_finished_at", type_=t.UTCDateTime()), j.c.finished_at
                ),
                claimed_by=sa.case((release, None), else_=j.c.claimed_by),
                claim_expires_at=sa.case((release, None), else_=j.c.claim_expires_at),
                updated_at=bp("b_now", type_=t.UTCDateTime()),
            )
        )
        with self.engine.begin() as conn:
            updated = conn.execute(stmt, params).rowcount
            if conn.dialect.supports_sane_multi_rowcount and updated == len(params):
                lost: set[int] = set()  # every compare-and-set applied (SQLite counts them)
            else:
                # Some change lost, or a driver that cannot count the rows of a batched UPDATE
                # (psycopg2): read the statuses back, in the transaction, so our own changes
                # are what we see.
                wanted = {c.job_id: c.status.value for c in changes}
                now_status = dict(
                    conn.execute(
                        sa.select(j.c.id, j.c.status).where(j.c.id.in_(list(wanted)))
                    ).all()
                )
                lost = {
                    job_id for job_id, status in wanted.items() if now_status.get(job_id) != status
                }
            if logs := [row for row in logs if row["job_id"] not in lost]:
                conn.execute(t.job_tracking_log.insert(), logs)
        return lost

    def skip_job(self, job_id: int, reason: str) -> None:
        """Skip a job and its configuration: neither counts in reconciliation any more."""
        with self.engine.begin() as conn:
            config_id = conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id)
                .values(skipped=True, skipped_reason=reason, updated_at=utcnow())
                .returning(t.jobs.c.job_configuration_id)
            ).scalar_one_or_none()
            if config_id is None:
                raise NotFound(f"job {job_id} does not exist")
            conn.execute(
                t.job_configurations.update()
                .where(t.job_configurations.c.id == config_id)
                .values(skipped=True, skipped_reason=reason)
            )

    def resubmit_jobs(
        self,
        job_ids: Sequence[int],
        *,
        configuration_data: Mapping[str, Any] | None = None,
        override_reason: str | None = None,
        allow_finished: bool = False,
    ) -> list[int]:
        """Create a new INITIATED job for each given job; the old one is marked skipped.

        With ``configuration_data`` (and a required ``override_reason``) a new job
        configuration replaces the old one, linked both ways, and the old configuration is
        skipped. The batch reopens to ACTIVE. All of it is one transaction.
        """
        if configuration_data is not None and not (override_reason and override_reason.strip()):
            raise JobError("a replacement job configuration needs an override reason")
        now = utcnow()
        new_ids: list[int] = []
        with self.engine.begin() as conn:
            rows = conn.execute(self._jobs_query().where(t.jobs.c.id.in_(list(job_ids)))).all()
            found = {r._mapping["id"]: _job_record(r) for r in rows}
            missing = [i for i in job_ids if i not in found]
            if missing:
                raise NotFound(f"jobs do not exist: {missing}")
            batch_ids = {j.batch_id for j in found.values()}
            for job_id in job_ids:
                job = found[job_id]
                if job.skipped:
                    raise JobError(
                        f"job {job_id} is skipped (already resubmitted)", code="BP-JOB-SKIPPED"
                    )
                allowed = {JobStatus.FAILED, JobStatus.ERROR, JobStatus.CANCELLED}
                if allow_finished:
                    allowed.add(JobStatus.FINISHED)
                if job.status not in allowed:
                    raise JobError(
                        f"job {job_id} is {job.status}; only {sorted(s.value for s in allowed)} jobs can be resubmitted",
                        code="BP-JOB-NOT-RESUBMITTABLE",
                    )
                configuration_id = job.job_configuration_id
                if configuration_data is not None:
                    configuration_id = conn.execute(
                        t.job_configurations.insert()
                        .values(
                            batch_id=job.batch_id,
                            key=job.key,
                            data=dict(configuration_data),
                            skipped=False,
                            override_reason=override_reason,
                            parent_job_configuration_id=job.job_configuration_id,
                            created_at=now,
                        )
                        .returning(t.job_configurations.c.id)
                    ).scalar_one()
                    conn.execute(
                        t.job_configurations.update()
                        .where(t.job_configurations.c.id == job.job_configuration_id)
                        .values(
                            skipped=True,
                            skipped_reason=f"overridden by configuration {configuration_id}",
                            overridden_by_job_configuration_id=configuration_id,
                        )
                    )
                # Take the job first, guarded: a concurrent resubmission of the same job, or a
                # run still holding a live claim on it, makes this one fail instead of
                # creating a second job with a second key.
                taken = conn.execute(
                    t.jobs.update()
                    .where(
                        t.jobs.c.id == job.id,
                        t.jobs.c.skipped.is_(False),
                        sa.or_(t.jobs.c.claimed_by.is_(None), t.jobs.c.claim_expires_at < now),
                    )
                    .values(skipped=True, skipped_reason="resubmitted", updated_at=now)
                ).rowcount
                if taken != 1:
                    raise JobError(
                        f"job {job_id} is being resubmitted or submitted by another run",
                        code="BP-JOB-BUSY",
                    )
                new_id = conn.execute(
                    t.jobs.insert()
                    .values(**self._new_job_row(job.batch_id, configuration_id, now, parent=job.id))
                    .returning(t.jobs.c.id)
                ).scalar_one()
                conn.execute(
                    t.jobs.update()
                    .where(t.jobs.c.id == job.id)
                    .values(skipped_reason=f"resubmitted as job {new_id}")
                )
                new_ids.append(new_id)
            for batch_id in batch_ids:
                current = self._lock_batch(conn, batch_id)
                if current != BatchStatus.ACTIVE:
                    check_batch_transition(current, BatchStatus.ACTIVE)
                    self._write_batch_status(conn, batch_id, BatchStatus.ACTIVE)
        return new_ids

    # ---------------------------------------------------------- reconciliation
    def reconcile_batch(self, batch_id: int) -> Reconciliation:
        """Compute the batch status from its jobs, store it and log the result, atomically.

        A PAUSED or CANCELLED batch keeps its status while work remains (ACTIVE result): only
        an explicit resume or resubmission reopens it. A settled result overrides a pause
        because nothing is left to resume.
        """
        with self.engine.begin() as conn:
            current = self._lock_batch(conn, batch_id)
            configs = [
                ConfigurationView(id=r.id, skipped=bool(r.skipped))
                for r in conn.execute(
                    sa.select(t.job_configurations.c.id, t.job_configurations.c.skipped).where(
                        t.job_configurations.c.batch_id == batch_id
                    )
                )
            ]
            job_views = [
                JobView(
                    id=r.id,
                    job_configuration_id=r.job_configuration_id,
                    status=JobStatus(r.status),
                    skipped=bool(r.skipped),
                )
                for r in conn.execute(
                    sa.select(
                        t.jobs.c.id,
                        t.jobs.c.job_configuration_id,
                        t.jobs.c.status,
                        t.jobs.c.skipped,
                    ).where(t.jobs.c.batch_id == batch_id)
                )
            ]
            result = reconcile(configs, job_views)
            new = result.status
            if current in (BatchStatus.PAUSED, BatchStatus.CANCELLED) and new == BatchStatus.ACTIVE:
                # Someone paused or cancelled it on purpose: work left over does not reopen it.
                new = current
            if new != current:
                if not can_transition_batch(current, new):
                    # e.g. INITIATED -> FAILED cannot happen without passing ACTIVE.
                    self._write_batch_status(conn, batch_id, BatchStatus.ACTIVE)
                    current = BatchStatus.ACTIVE
                if new != current:
                    check_batch_transition(current, new)
                    self._write_batch_status(conn, batch_id, new)
            conn.execute(
                t.batch_recon_log.insert().values(
                    batch_id=batch_id,
                    status=result.status.value,
                    summary=result.to_dict(),
                    reconciled_at=utcnow(),
                )
            )
        return result

    def recon_log(self, batch_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.batch_recon_log)
                .where(t.batch_recon_log.c.batch_id == batch_id)
                .order_by(t.batch_recon_log.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def activate_batch(self, batch_id: int) -> BatchRecord:
        """INITIATED/settled/PAUSED -> ACTIVE (no-op when already ACTIVE)."""
        with self.engine.begin() as conn:
            current = self._lock_batch(conn, batch_id)
            if current != BatchStatus.ACTIVE:
                check_batch_transition(current, BatchStatus.ACTIVE)
                self._write_batch_status(conn, batch_id, BatchStatus.ACTIVE)
        return self.get_batch(batch_id)

    # ------------------------------------------------------------------ cost ledger
    def record_cost_entries(self, entries: Sequence[CostEntry]) -> int:
        """Write ledger entries in one transaction; return how many were new.

        A ``call_key`` already in the ledger is skipped (``ON CONFLICT DO NOTHING``), so a
        resumed run may record the same call again without billing it twice. Entries
        repeated within ``entries`` must be identical (see ``dedupe_entries``).
        """
        with self.engine.begin() as conn:
            return insert_cost_entries(conn, entries) or 0

    def list_cost_entries(self, batch_id: int) -> list[CostEntry]:
        """The ledger entries of one batch, in the order they were recorded."""
        ce = t.cost_entries
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ce).where(ce.c.batch_id == batch_id).order_by(ce.c.id)
            ).all()
        return [
            CostEntry(
                call_key=m["call_key"],
                batch_id=m["batch_id"],
                phase=m["phase"],
                item_id=str(m["item_id"]) if m["item_id"] is not None else None,
                model=m["model"],
                usage=Usage(m["prompt_tokens"], m["completion_tokens"], bool(m["estimated"])),
                # SQLite keeps NUMERIC as a float: re-quantize to the ledger's precision.
                cost=Decimal(m["cost"]).quantize(COST_QUANTUM),
                kind=m["kind"],
            )
            for m in (r._mapping for r in rows)
        ]

    def cost_totals(self, batch_id: int) -> CostTotals:
        """Totals of one batch, summed over its ledger entries (never a counter)."""
        return summarize(self.list_cost_entries(batch_id))

    def ledger_total(self, batch_id: int, *, phase: str | None = None) -> tuple[Decimal, int]:
        """Total cost and tokens of one batch's ledger (of one ``phase`` of it, if given),
        summed by the database.

        What progress reports and budgets need, without reading every entry as
        ``cost_totals`` does (a 10,000-item, 3-phase job has 30,000 of them).
        """
        ce = t.cost_entries
        tokens = sa.func.sum(ce.c.prompt_tokens + ce.c.completion_tokens)
        query = sa.select(self.ledger_cost_sum(), tokens).where(ce.c.batch_id == batch_id)
        if phase is not None:
            query = query.where(ce.c.phase == phase)
        with self.engine.connect() as conn:
            total, token_sum = conn.execute(query).one()
        return self.ledger_cost(total), int(token_sum or 0)

    def ledger_cost_sum(self) -> sa.ColumnElement:
        """``SUM`` of ledger costs, exact on both backends: SQLite keeps NUMERIC as a float,
        so there it sums whole cost quanta (each entry is quantized to ``COST_QUANTUM``),
        not floats. Read the result with ``ledger_cost``."""
        cost = t.cost_entries.c.cost
        if self.dialect == "sqlite":
            return sa.func.sum(sa.cast(sa.func.round(cost * int(1 / COST_QUANTUM)), sa.BigInteger))
        return sa.func.sum(cost)

    def ledger_cost(self, summed: Any) -> Decimal:
        """The Decimal cost of a ``ledger_cost_sum`` result (None, for no rows, is zero)."""
        if summed is None:
            return Decimal(0)
        if self.dialect == "sqlite":
            return (Decimal(int(summed)) * COST_QUANTUM).quantize(COST_QUANTUM)
        return Decimal(summed).quantize(COST_QUANTUM)
