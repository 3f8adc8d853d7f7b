"""Baseline schema: cycles, configurations, batches, jobs, their logs, items, phase results,
the cost ledger and contexts.

Frozen: the tables are written out as they stood at this revision (``batches`` got its
one-batch-per-partition constraint in 0002). Never edit a migration once it is merged;
change the schema with a new revision (see README, "How it is built").

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
        sa.UniqueConstraint("name", name=op.f("uq_cycles_name")),
    )
    op.create_table(
        "configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("family", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(length=80), nullable=True),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_configurations_cycle_id_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configurations")),
    )
    op.create_index(
        op.f("ix_configurations_cycle_id"), "configurations", ["cycle_id"], unique=False
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=40), nullable=False),
        sa.Column("batch_type", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("configuration_id", sa.Integer(), nullable=True),
        sa.Column("partition_key", sa.String(length=400), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_batches_configuration_id_configurations"),
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_batches_cycle_id_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(
        op.f("ix_batches_configuration_id"), "batches", ["configuration_id"], unique=False
    )
    op.create_index(op.f("ix_batches_cycle_id"), "batches", ["cycle_id"], unique=False)
    op.create_index(op.f("ix_batches_partition_key"), "batches", ["partition_key"], unique=False)
    op.create_table(
        "batch_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_events_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_events")),
    )
    op.create_index(op.f("ix_batch_events_batch_id"), "batch_events", ["batch_id"], unique=False)
    op.create_table(
        "batch_recon_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_recon_log_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_recon_log")),
    )
    op.create_index(
        op.f("ix_batch_recon_log_batch_id"), "batch_recon_log", ["batch_id"], unique=False
    )
    op.create_table(
        "contexts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_contexts_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contexts")),
        sa.UniqueConstraint("kind", "key", name="uq_contexts_kind_key"),
    )
    op.create_index(op.f("ix_contexts_batch_id"), "contexts", ["batch_id"], unique=False)
    op.create_table(
        "cost_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_key", sa.String(length=200), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("phase", sa.String(length=100), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("cost", sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_cost_entries_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_entries")),
        sa.UniqueConstraint("call_key", name=op.f("uq_cost_entries_call_key")),
    )
    op.create_index(op.f("ix_cost_entries_batch_id"), "cost_entries", ["batch_id"], unique=False)
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_items_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("batch_id", "item_index", name="uq_items_batch_index"),
    )
    op.create_table(
        "job_configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("parent_job_configuration_id", sa.Integer(), nullable=True),
        sa.Column("overridden_by_job_configuration_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_job_configurations_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["overridden_by_job_configuration_id"],
            ["job_configurations.id"],
            name=op.f(
                "fk_job_configurations_overridden_by_job_configuration_id_job_configurations"
            ),
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_configuration_id"],
            ["job_configurations.id"],
            name=op.f("fk_job_configurations_parent_job_configuration_id_job_configurations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_configurations")),
    )
    op.create_index(
        op.f("ix_job_configurations_batch_id"), "job_configurations", ["batch_id"], unique=False
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("job_configuration_id", sa.Integer(), nullable=False),
        sa.Column("parent_job_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.String(length=100), nullable=True),
        sa.Column("submission_request", sa.JSON(), nullable=True),
        sa.Column("submission_response", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("submit_attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submit_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tracked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_jobs_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["job_configuration_id"],
            ["job_configurations.id"],
            name=op.f("fk_jobs_job_configuration_id_job_configurations"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_id"], ["jobs.id"], name=op.f("fk_jobs_parent_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("request_id", name=op.f("uq_jobs_request_id")),
    )
    op.create_index("ix_jobs_batch_status", "jobs", ["batch_id", "status"], unique=False)
    op.create_index(
        op.f("ix_jobs_job_configuration_id"), "jobs", ["job_configuration_id"], unique=False
    )
    op.create_index(op.f("ix_jobs_workflow_id"), "jobs", ["workflow_id"], unique=False)
    op.create_table(
        "phase_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_phase_results_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_phase_results_item_id_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phase_results")),
        sa.UniqueConstraint("item_id", "phase", name="uq_phase_results_item_phase"),
    )
    op.create_index(op.f("ix_phase_results_batch_id"), "phase_results", ["batch_id"], unique=False)
    op.create_table(
        "job_tracking_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("service_status", sa.String(length=40), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("tracked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_tracking_log_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_tracking_log")),
    )
    op.create_index(
        op.f("ix_job_tracking_log_job_id"), "job_tracking_log", ["job_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_job_tracking_log_job_id"), table_name="job_tracking_log")
    op.drop_table("job_tracking_log")
    op.drop_index(op.f("ix_phase_results_batch_id"), table_name="phase_results")
    op.drop_table("phase_results")
    op.drop_index(op.f("ix_jobs_workflow_id"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_job_configuration_id"), table_name="jobs")
    op.drop_index("ix_jobs_batch_status", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_job_configurations_batch_id"), table_name="job_configurations")
    op.drop_table("job_configurations")
    op.drop_table("items")
    op.drop_index(op.f("ix_cost_entries_batch_id"), table_name="cost_entries")
    op.drop_table("cost_entries")
    op.drop_index(op.f("ix_contexts_batch_id"), table_name="contexts")
    op.drop_table("contexts")
    op.drop_index(op.f("ix_batch_recon_log_batch_id"), table_name="batch_recon_log")
    op.drop_table("batch_recon_log")
    op.drop_index(op.f("ix_batch_events_batch_id"), table_name="batch_events")
    op.drop_table("batch_events")
    op.drop_index(op.f("ix_batches_partition_key"), table_name="batches")
    op.drop_index(op.f("ix_batches_cycle_id"), table_name="batches")
    op.drop_index(op.f("ix_batches_configuration_id"), table_name="batches")
    op.drop_table("batches")
    op.drop_index(op.f("ix_configurations_cycle_id"), table_name="configurations")
    op.drop_table("configurations")
    op.drop_table("cycles")
