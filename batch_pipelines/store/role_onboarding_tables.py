"""Tables of the role onboarding family.

Seed 000's rule is "each role is independent, batches are just bookkeeping": a role's
progress lives in Dagster's run records, so these tables only keep what Dagster does not
know. ``role_batches`` is the batch record (who asked, for which company, with which
options, until when it is kept); ``role_workflows`` holds one row per role and attempt
(the workflow id people see, the partition key, the retry round whose run tag finds its
run, the id of that run once it started, and the step and error the run reported);
``role_dashboards`` is the published result of a role, the "ready" state that is not
redone without force_rerun; ``role_batch_tombstones`` remembers expired batch ids so that
asking for one says "expired" rather than "never existed".

They hang off the shared metadata of ``schema.py`` (which imports this module, so the
metadata is always complete) and are created by migration 0005.
"""

from __future__ import annotations

import sqlalchemy as sa

from batch_pipelines.store.schema import UTCDateTime, metadata

role_batches = sa.Table(
    "role_batches",
    metadata,
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("company_id", sa.String(100), nullable=False),
    sa.Column("created_by", sa.String(320)),
    sa.Column("options", sa.JSON, nullable=False),
    # Roles refused at submission, with their index, field and reason.
    sa.Column("invalid_roles", sa.JSON, nullable=False),
    # How many retry rounds exist (1 = the submission itself).
    sa.Column("rounds", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Index("ix_role_batches_company_created", "company_id", "created_at"),
)

role_workflows = sa.Table(
    "role_workflows",
    metadata,
    # Increasing: the submissions sensor's cursor.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workflow_id", sa.String(60), nullable=False, unique=True),
    sa.Column(
        "batch_id",
        sa.String(40),
        sa.ForeignKey("role_batches.batch_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("role_index", sa.Integer, nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("partition_key", sa.String(400), nullable=False),
    sa.Column("role_name", sa.String(400), nullable=False),
    sa.Column("draup_role_name", sa.String(400)),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("retry_of", sa.String(60)),
    sa.Column("last_step", sa.String(60)),
    sa.Column("error", sa.Text),
    # The Dagster run that executes this workflow, recorded by the run when it starts.
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_role_workflows_batch_round", "batch_id", "round"),
)

role_dashboards = sa.Table(
    "role_dashboards",
    metadata,
    # The dashboard id is "cr-<id>"; its URL /dashboard/roles/cr-<id>.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("partition_key", sa.String(400), nullable=False, unique=True),
    sa.Column("company_id", sa.String(100), nullable=False, index=True),
    sa.Column("role_name", sa.String(400), nullable=False),
    sa.Column("taxonomy_role_id", sa.String(60), nullable=False),
    sa.Column("taxonomy_role_name", sa.String(400), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("workflow_id", sa.String(60)),
    sa.Column("published_at", UTCDateTime(), nullable=False),
)

role_batch_tombstones = sa.Table(
    "role_batch_tombstones",
    metadata,
    sa.Column("batch_id", sa.String(40), primary_key=True),
    sa.Column("company_id", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expired_at", UTCDateTime(), nullable=False),
)

# Every table of this module, in creation order (migration 0005 creates these).
TABLES: list[sa.Table] = [role_batches, role_workflows, role_dashboards, role_batch_tombstones]
