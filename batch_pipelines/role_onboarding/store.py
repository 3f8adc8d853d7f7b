"""Persistence of role batches, their workflows, published dashboards and expired ids.

The batch record is bookkeeping with a time to live (seed 000 keeps it 24 h in Redis): a
record past its ``expires_at`` is deleted the first time anyone reads it (and by the
cleanup job), leaving a tombstone so that asking for it says "expired", not "not found".
Every multi-row change (a batch with its workflows, a retry round, an expiry) is one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from batch_pipelines.core.errors import BatchPipelinesError, NotFound
from batch_pipelines.core.sequences import chunks
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.role_onboarding.status import RoleBatchRecord, WorkflowRecord
from batch_pipelines.role_onboarding.submission import ValidatedSubmission, workflow_id
from batch_pipelines.store import schema as t
from batch_pipelines.store.batch_store import BatchStore, utcnow
from batch_pipelines.store.role_onboarding_tables import (
    role_batch_tombstones,
    role_batches,
    role_dashboards,
    role_workflows,
)

DEFAULT_TTL = timedelta(hours=24)
# The shared ``batches`` row of a role batch (partition key = the role batch id): what the
# cost ledger's entries hang off. Its status is not maintained; a role batch's status is
# computed from its runs.
LEDGER_FAMILY = "role_onboarding"
LEDGER_BATCH_TYPE = "role onboarding"


class BatchExpired(NotFound):
    """The batch existed and its record reached its time to live."""

    code = "BP-ROLE-BATCH-EXPIRED"


@dataclass(frozen=True)
class DashboardRecord:
    dashboard_id: str
    partition_key: str
    company_id: str
    role_name: str
    taxonomy_role_id: str
    taxonomy_role_name: str
    record: dict[str, Any]
    workflow_id: str | None
    published_at: datetime


class RoleOnboardingStore:
    """SQL of the role onboarding family on the shared store's engine."""

    def __init__(self, engine_or_store: Any):
        self.engine: sa.Engine = getattr(engine_or_store, "engine", engine_or_store)
        self._ledger = engine_or_store if isinstance(engine_or_store, BatchStore) else None

    # ------------------------------------------------------------------ batches

    def create_batch(
        self,
        batch_id: str,
        submission: ValidatedSubmission,
        *,
        ttl: timedelta = DEFAULT_TTL,
        now: datetime | None = None,
    ) -> RoleBatchRecord:
        """Store the batch record, one round-1 workflow per valid role and the shared
        ``batches`` row the batch's costs are billed to, atomically."""
        if ttl <= timedelta(0):
            raise BatchPipelinesError(f"batch TTL must be positive, got {ttl}")
        now = now or utcnow()
        options = submission.options.to_dict()
        with self.engine.begin() as conn:
            conn.execute(
                role_batches.insert().values(
                    batch_id=batch_id,
                    company_id=submission.company_id,
                    created_by=submission.created_by,
                    options=options,
                    invalid_roles=[r.to_dict() for r in submission.invalid],
                    rounds=1,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
            conn.execute(
                t.batches.insert().values(
                    family=LEDGER_FAMILY,
                    batch_type=LEDGER_BATCH_TYPE,
                    name=f"{submission.company_id} roles",
                    partition_key=batch_id,
                    status=BatchStatus.ACTIVE.value,
                    options=options,
                    created_at=now,
                    updated_at=now,
                )
            )
            if submission.valid:
                conn.execute(
                    role_workflows.insert(),
                    [
                        {
                            "workflow_id": workflow_id(batch_id, 1, role.partition_key),
                            "batch_id": batch_id,
                            "role_index": role.index,
                            "round": 1,
                            "partition_key": role.partition_key,
                            "role_name": role.role_name,
                            "draup_role_name": role.draup_role_name,
                            "options": options,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for role in submission.valid
                    ],
                )
        return self.get_batch(batch_id, now=now)

    def add_retry_round(
        self,
        batch_id: str,
        retried_workflow_ids: Sequence[str],
        options: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> list[WorkflowRecord]:
        """A new round with one workflow per retried one, joining the same batch."""
        now = now or utcnow()
        batch = self.get_batch(batch_id, now=now)
        by_id = {wf.workflow_id: wf for wf in batch.workflows}
        missing = [w for w in retried_workflow_ids if w not in by_id]
        if missing:
            raise NotFound(f"workflows {missing} are not part of {batch_id}")
        if not retried_workflow_ids:
            return []
        new_round = batch.rounds + 1
        rows = []
        for wid in retried_workflow_ids:
            old = by_id[wid]
            rows.append(
                {
                    "workflow_id": workflow_id(batch_id, new_round, old.partition_key),
                    "batch_id": batch_id,
                    "role_index": old.role_index,
                    "round": new_round,
                    "partition_key": old.partition_key,
                    "role_name": old.role_name,
                    "draup_role_name": old.draup_role_name,
                    "options": {**old.options, **dict(options)},
                    "retry_of": wid,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with self.engine.begin() as conn:
            # Guarded on the round we read: two retries at once cannot both add round N+1.
            updated = conn.execute(
                role_batches.update()
                .where(role_batches.c.batch_id == batch_id, role_batches.c.rounds == batch.rounds)
                .values(rounds=new_round)
            ).rowcount
            if updated != 1:
                raise BatchPipelinesError(
                    f"{batch_id} was retried concurrently; read its status and retry again"
                )
            conn.execute(role_workflows.insert(), rows)
        new_ids = {r["workflow_id"] for r in rows}
        return [
            wf for wf in self.get_batch(batch_id, now=now).workflows if wf.workflow_id in new_ids
        ]

    def get_batch(
        self, batch_id: str, *, now: datetime | None = None, with_options: bool = True
    ) -> RoleBatchRecord:
        """The batch with its workflows; raises BatchExpired (deleting it if it just expired)
        or NotFound. ``with_options=False`` leaves the workflows' options empty, which the
        status does not need and which costs a JSON decoding per role."""
        now = now or utcnow()
        workflows: list[WorkflowRecord] = []
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(role_batches).where(role_batches.c.batch_id == batch_id))
                .mappings()
                .first()
            )
            if row is None:
                self._raise_missing(conn, batch_id)
            expired = row["expires_at"] <= now
            if not expired:
                workflows = _workflows_by_batch(conn, [batch_id], with_options=with_options).get(
                    batch_id, []
                )
        if expired:
            self._expire([batch_id], now)
            with self.engine.connect() as conn:
                self._raise_missing(conn, batch_id)
        return _batch(row, workflows)

    def ledger_batch_id(self, batch_id: str) -> int | None:
        """The id of the role batch's shared ``batches`` row (its cost ledger entries' batch);
        it outlives the batch record's time to live, as the costs do."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(t.batches.c.id).where(
                    t.batches.c.family == LEDGER_FAMILY,
                    t.batches.c.batch_type == LEDGER_BATCH_TYPE,
                    t.batches.c.partition_key == batch_id,
                )
            ).scalar_one_or_none()

    def ledger_totals(self, batch_id: str) -> tuple[Decimal, int]:
        """The batch's cost and tokens, summed by the database over its ledger entries (every
        role and every retry round bills the same shared row); zero before any call."""
        ledger_id = self.ledger_batch_id(batch_id)
        if ledger_id is None:
            return Decimal(0), 0
        if self._ledger is None:
            self._ledger = BatchStore(engine=self.engine)
        return self._ledger.ledger_total(ledger_id)

    def _raise_missing(self, conn: sa.Connection, batch_id: str) -> None:
        tomb = (
            conn.execute(
                sa.select(role_batch_tombstones).where(role_batch_tombstones.c.batch_id == batch_id)
            )
            .mappings()
            .first()
        )
        if tomb is not None:
            raise BatchExpired(
                f"{batch_id} expired at {tomb['expired_at'].isoformat()} (batch records are kept for their "
                "time to live); its record is gone, its roles' runs and dashboards remain",
                details={"batch_id": batch_id, "company_id": tomb["company_id"]},
            )
        raise NotFound(f"no batch {batch_id}", details={"batch_id": batch_id})

    def list_batches(
        self, company_id: str, *, now: datetime | None = None
    ) -> list[RoleBatchRecord]:
        """The company's live batches, newest first (expired ones are deleted on the way)."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(role_batches)
                    .where(role_batches.c.company_id == company_id)
                    .order_by(role_batches.c.created_at.desc())
                )
                .mappings()
                .all()
            )
        expired = [r["batch_id"] for r in rows if r["expires_at"] <= now]
        if expired:
            self._expire(expired, now)
        live = [r for r in rows if r["expires_at"] > now]
        with self.engine.connect() as conn:
            by_batch = _workflows_by_batch(conn, [r["batch_id"] for r in live])
        return [_batch(r, by_batch.get(r["batch_id"], [])) for r in live]

    def delete_expired(self, *, now: datetime | None = None) -> list[str]:
        """Delete every batch past its time to live; returns their ids."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            ids = list(
                conn.execute(
                    sa.select(role_batches.c.batch_id).where(role_batches.c.expires_at <= now)
                ).scalars()
            )
        self._expire(ids, now)
        return ids

    def _expire(self, batch_ids: Iterable[str], now: datetime) -> None:
        ids = list(batch_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            rows = (
                conn.execute(
                    sa.select(
                        role_batches.c.batch_id,
                        role_batches.c.company_id,
                        role_batches.c.created_at,
                    ).where(role_batches.c.batch_id.in_(ids), role_batches.c.expires_at <= now)
                )
                .mappings()
                .all()
            )
            gone = [r["batch_id"] for r in rows]
            if not gone:
                return
            conn.execute(role_workflows.delete().where(role_workflows.c.batch_id.in_(gone)))
            conn.execute(role_batches.delete().where(role_batches.c.batch_id.in_(gone)))
            known = set(
                conn.execute(
                    sa.select(role_batch_tombstones.c.batch_id).where(
                        role_batch_tombstones.c.batch_id.in_(gone)
                    )
                ).scalars()
            )
            fresh = [dict(r, expired_at=now) for r in rows if r["batch_id"] not in known]
            if fresh:
                conn.execute(role_batch_tombstones.insert(), fresh)

    # ---------------------------------------------------------------- workflows

    def workflows_after(self, last_id: int, *, limit: int = 500) -> list[WorkflowRecord]:
        """Workflows stored after ``last_id`` (the submissions sensor's cursor), oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(role_workflows)
                    .where(role_workflows.c.id > last_id)
                    .order_by(role_workflows.c.id)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [_workflow(r) for r in rows]

    def get_workflow(self, workflow: str) -> WorkflowRecord | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(role_workflows).where(role_workflows.c.workflow_id == workflow)
                )
                .mappings()
                .first()
            )
        return _workflow(row) if row is not None else None

    def record_run(
        self, workflow: str, run_id: str, *, now: datetime | None = None
    ) -> WorkflowRecord | None:
        """The run executing a workflow, recorded when it starts (the batch record then lists
        its roles' run ids); the workflow, or None when its batch is gone."""
        with self.engine.begin() as conn:
            conn.execute(
                role_workflows.update()
                .where(role_workflows.c.workflow_id == workflow)
                .values(run_id=run_id, updated_at=now or utcnow())
            )
        return self.get_workflow(workflow)

    def record_step(
        self, workflow: str, step: str, *, error: str | None = None, now: datetime | None = None
    ) -> None:
        """The step a workflow's run reached and, when it failed there, why."""
        with self.engine.begin() as conn:
            conn.execute(
                role_workflows.update()
                .where(role_workflows.c.workflow_id == workflow)
                .values(last_step=step, error=error, updated_at=now or utcnow())
            )

    # --------------------------------------------------------------- dashboards

    def publish_dashboard(
        self,
        *,
        partition_key: str,
        company_id: str,
        role_name: str,
        taxonomy_role_id: str,
        taxonomy_role_name: str,
        record: Mapping[str, Any],
        workflow: str | None,
        now: datetime | None = None,
    ) -> DashboardRecord:
        """Create or replace the role's dashboard record; its id survives a republish, so a
        dashboard URL people bookmarked stays valid."""
        now = now or utcnow()
        values = {
            "company_id": company_id,
            "role_name": role_name,
            "taxonomy_role_id": taxonomy_role_id,
            "taxonomy_role_name": taxonomy_role_name,
            "record": dict(record),
            "workflow_id": workflow,
            "published_at": now,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(
                role_dashboards.update()
                .where(role_dashboards.c.partition_key == partition_key)
                .values(**values)
            ).rowcount
            if not updated:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            role_dashboards.insert().values(partition_key=partition_key, **values)
                        )
                except sa.exc.IntegrityError:  # published concurrently: replace it instead
                    conn.execute(
                        role_dashboards.update()
                        .where(role_dashboards.c.partition_key == partition_key)
                        .values(**values)
                    )
        found = self.get_dashboard(partition_key)
        assert found is not None
        return found

    def get_dashboard(self, partition_key: str) -> DashboardRecord | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(role_dashboards).where(
                        role_dashboards.c.partition_key == partition_key
                    )
                )
                .mappings()
                .first()
            )
        return _dashboard(row) if row is not None else None

    def dashboard_ids(self, company_id: str, partition_keys: Iterable[str]) -> dict[str, str]:
        """Partition key -> dashboard id for those of ``partition_keys`` that have one.

        One indexed query for the company's dashboards, rather than IN lists of thousands
        of keys: a company has as many dashboards as roles, about what a big batch asks."""
        wanted = set(partition_keys)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(role_dashboards.c.partition_key, role_dashboards.c.id).where(
                    role_dashboards.c.company_id == company_id
                )
            ).all()
        return {key: f"cr-{ident}" for key, ident in rows if key in wanted}


# Columns a batch read does not need: timestamps of each workflow, and (for the status)
# the options.
_STATUS_SKIPS = frozenset({"created_at", "updated_at", "options"})
_LIST_CHUNK = 500  # batches per query when listing (bound parameters per statement)


def _workflow(m: Mapping[str, Any]) -> WorkflowRecord:
    options = m.get("options")
    return WorkflowRecord(
        id=m["id"],
        workflow_id=m["workflow_id"],
        batch_id=m["batch_id"],
        role_index=m["role_index"],
        round=m["round"],
        partition_key=m["partition_key"],
        role_name=m["role_name"],
        draup_role_name=m["draup_role_name"],
        options=dict(options) if options else {},
        retry_of=m["retry_of"],
        last_step=m["last_step"],
        error=m["error"],
        run_id=m["run_id"],
    )


def _workflows(rows: Sequence[Any], names: Sequence[str]) -> list[WorkflowRecord]:
    """Rows as plain tuples zipped with their column names: the fast path for a batch of
    10,000 roles (SQLAlchemy's per-row mapping access costs more than the query)."""
    at = {name: i for i, name in enumerate(names)}
    o = at.get("options")
    i_id, i_wf, i_b, i_ix, i_r, i_pk, i_rn, i_d, i_ro, i_ls, i_e, i_run = (
        at[n]
        for n in (
            "id", "workflow_id", "batch_id", "role_index", "round", "partition_key", "role_name",
            "draup_role_name", "retry_of", "last_step", "error", "run_id",
        )
    )  # fmt: skip
    return [
        WorkflowRecord(
            r[i_wf],
            r[i_b],
            r[i_ix],
            r[i_r],
            r[i_pk],
            r[i_rn],
            r[i_d],
            dict(r[o]) if o is not None and r[o] else {},
            r[i_ro],
            r[i_ls],
            r[i_e],
            r[i_id],
            r[i_run],
        )  # fmt: skip
        for r in rows
    ]


def _workflows_by_batch(
    conn: sa.Connection, batch_ids: Sequence[str], *, with_options: bool = True
) -> dict[str, list[WorkflowRecord]]:
    """The workflows of ``batch_ids``, per batch in creation order: one query per chunk of
    batches, not one per batch. Without options their JSON is not decoded (the status does
    not need it)."""
    columns = [
        c
        for c in role_workflows.c
        if c.name not in _STATUS_SKIPS or (with_options and c.name == "options")
    ]
    names = [c.name for c in columns]
    at = names.index("batch_id")
    rows_by_batch: dict[str, list[Any]] = {}
    for chunk in chunks(batch_ids, _LIST_CHUNK):
        query = (
            sa.select(*columns)
            .where(role_workflows.c.batch_id.in_(chunk))
            .order_by(role_workflows.c.id)
        )
        for row in conn.execute(query):
            rows_by_batch.setdefault(row[at], []).append(row)
    return {batch_id: _workflows(rows, names) for batch_id, rows in rows_by_batch.items()}


def _batch(row: Mapping[str, Any], workflows: list[WorkflowRecord]) -> RoleBatchRecord:
    return RoleBatchRecord(
        batch_id=row["batch_id"],
        company_id=row["company_id"],
        created_by=row["created_by"],
        options=dict(row["options"] or {}),
        invalid_roles=list(row["invalid_roles"] or []),
        rounds=row["rounds"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        workflows=workflows,
    )


def _dashboard(r: Mapping[str, Any]) -> DashboardRecord:
    return DashboardRecord(
        dashboard_id=f"cr-{r['id']}",
        partition_key=r["partition_key"],
        company_id=r["company_id"],
        role_name=r["role_name"],
        taxonomy_role_id=r["taxonomy_role_id"],
        taxonomy_role_name=r["taxonomy_role_name"],
        record=dict(r["record"] or {}),
        workflow_id=r["workflow_id"],
        published_at=r["published_at"],
    )
