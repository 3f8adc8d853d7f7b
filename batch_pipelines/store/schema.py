"""The store's tables.

One schema serves every family: a batch is a collection of job configurations, each with
one or more jobs (attempts). Later families add their own detail tables (items, phase
results, contexts) that hang off batches. History is never overwritten: a resubmission is a
new job row pointing at its parent, and the old row is marked skipped.

Keep this file and the migrations in step: ``test_migrations_match_the_schema`` compares a
migrated database with this metadata.
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa

# Not alembic's default name: the store may share a database with Dagster's own storage,
# which keeps its schema revision in ``alembic_version``.
VERSION_TABLE = "batch_pipelines_schema_version"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC timestamps on every backend.

    SQLite keeps no offset, so values are stored as naive UTC there and handed back as
    aware UTC; PostgreSQL keeps ``timestamptz``. Callers always see aware datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_ts = UTCDateTime()

cycles = sa.Table(
    "cycles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),  # ACTIVE | ARCHIVED
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("archived_at", _ts),
)

configurations = sa.Table(
    "configurations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), index=True),
    sa.Column("family", sa.String(40), nullable=False),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("checksum", sa.String(80)),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("family", sa.String(40), nullable=False),
    sa.Column("batch_type", sa.String(80), nullable=False),
    sa.Column("name", sa.String(400)),
    sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), index=True),
    sa.Column("configuration_id", sa.Integer, sa.ForeignKey("configurations.id"), index=True),
    sa.Column("partition_key", sa.String(400), index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("updated_at", _ts, nullable=False),
    sa.Column("settled_at", _ts),
    # One batch per batch type and partition: two runs of the same partition must find the
    # same batch, never create one each (each would submit every job with its own keys).
    # Batches without a partition (NULL) are not constrained.
    sa.UniqueConstraint(
        "family", "batch_type", "partition_key", name="uq_batches_family_type_partition"
    ),
)

job_configurations = sa.Table(
    "job_configurations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False, index=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("skipped", sa.Boolean, nullable=False, default=False),
    sa.Column("skipped_reason", sa.Text),
    sa.Column("override_reason", sa.Text),
    sa.Column("parent_job_configuration_id", sa.Integer, sa.ForeignKey("job_configurations.id")),
    sa.Column(
        "overridden_by_job_configuration_id", sa.Integer, sa.ForeignKey("job_configurations.id")
    ),
    sa.Column("created_at", _ts, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False),
    sa.Column(
        "job_configuration_id",
        sa.Integer,
        sa.ForeignKey("job_configurations.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("parent_job_id", sa.Integer, sa.ForeignKey("jobs.id")),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("skipped", sa.Boolean, nullable=False, default=False),
    sa.Column("skipped_reason", sa.Text),
    # The idempotency key sent with the submission (x-rms-requestid). Derived from the job
    # id, so a resumed run resends the same key and the service replays instead of
    # accepting twice.
    sa.Column("request_id", sa.String(64), unique=True),
    sa.Column("workflow_id", sa.String(100), index=True),
    sa.Column("submission_request", sa.JSON),
    sa.Column("submission_response", sa.JSON),
    sa.Column("last_error", sa.Text),
    sa.Column("submit_attempts", sa.Integer, nullable=False, default=0),
    # Row-level claim: the run that may submit this job, until claim_expires_at.
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claim_expires_at", _ts),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("submit_requested_at", _ts),
    sa.Column("submitted_at", _ts),
    sa.Column("last_tracked_at", _ts),
    sa.Column("finished_at", _ts),
    sa.Column("updated_at", _ts, nullable=False),
    sa.Index("ix_jobs_batch_status", "batch_id", "status"),
)

job_tracking_log = sa.Table(
    "job_tracking_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("service_status", sa.String(40)),
    sa.Column("progress", sa.Float),
    sa.Column("details", sa.JSON),
    sa.Column("tracked_at", _ts, nullable=False),
)

batch_recon_log = sa.Table(
    "batch_recon_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("reconciled_at", _ts, nullable=False),
)

batch_events = sa.Table(
    "batch_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False, index=True),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON),
    sa.Column("created_at", _ts, nullable=False),
)

# Items and their per-phase results: the work units of families whose jobs run inside the
# run (document AI items, configured-batch requests). One row per (item, phase); a result
# row that exists is done and is never redone on resume.
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False),
    sa.Column("item_index", sa.Integer, nullable=False),
    sa.Column("key", sa.String(400)),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("updated_at", _ts, nullable=False),
    sa.UniqueConstraint("batch_id", "item_index", name="uq_items_batch_index"),
)

phase_results = sa.Table(
    "phase_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False, index=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
    sa.Column("phase", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("output", sa.JSON),
    sa.Column("score", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("error", sa.Text),
    sa.Column("latency_seconds", sa.Float),
    sa.Column("created_at", _ts, nullable=False),
    sa.UniqueConstraint("item_id", "phase", name="uq_phase_results_item_phase"),
)

# The cost ledger: one row per billed call. call_key is unique, so a retried write of the
# same call can never bill twice; totals are always sums over this table.
cost_entries = sa.Table(
    "cost_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("call_key", sa.String(200), nullable=False, unique=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), index=True),
    sa.Column("phase", sa.String(100)),
    sa.Column("item_id", sa.Integer),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("cost", sa.Numeric(18, 8), nullable=False),
    sa.Column("created_at", _ts, nullable=False),
)

contexts = sa.Table(
    "contexts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("updated_at", _ts, nullable=False),
    sa.UniqueConstraint("kind", "key", name="uq_contexts_kind_key"),
)


# The families' own tables live in their modules but on this metadata, so that
# ``test_migrations_match_the_schema`` (and alembic's autogenerate) always see the whole schema.
from batch_pipelines.store import (  # noqa: E402, F401  (registers the tables)
    configured_batches_tables,
    document_ai_tables,
    role_onboarding_tables,
)
