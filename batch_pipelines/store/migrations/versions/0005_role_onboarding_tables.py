"""Role onboarding: batch records, role workflows, dashboards and tombstones.

Frozen: the tables are written out as they stood at this revision.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "role_batch_tombstones",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_role_batch_tombstones")),
    )
    op.create_table(
        "role_batches",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("invalid_roles", sa.JSON(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_role_batches")),
    )
    op.create_index(
        "ix_role_batches_company_created",
        "role_batches",
        ["company_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_role_batches_expires_at"), "role_batches", ["expires_at"], unique=False
    )
    op.create_table(
        "role_dashboards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partition_key", sa.String(length=400), nullable=False),
        sa.Column("company_id", sa.String(length=100), nullable=False),
        sa.Column("role_name", sa.String(length=400), nullable=False),
        sa.Column("taxonomy_role_id", sa.String(length=60), nullable=False),
        sa.Column("taxonomy_role_name", sa.String(length=400), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("workflow_id", sa.String(length=60), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_dashboards")),
        sa.UniqueConstraint("partition_key", name=op.f("uq_role_dashboards_partition_key")),
    )
    op.create_index(
        op.f("ix_role_dashboards_company_id"), "role_dashboards", ["company_id"], unique=False
    )
    op.create_table(
        "role_workflows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=60), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("role_index", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("partition_key", sa.String(length=400), nullable=False),
        sa.Column("role_name", sa.String(length=400), nullable=False),
        sa.Column("draup_role_name", sa.String(length=400), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("retry_of", sa.String(length=60), nullable=True),
        sa.Column("last_step", sa.String(length=60), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["role_batches.batch_id"],
            name=op.f("fk_role_workflows_batch_id_role_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_workflows")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_role_workflows_workflow_id")),
    )
    op.create_index(
        "ix_role_workflows_batch_round", "role_workflows", ["batch_id", "round"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_role_workflows_batch_round", table_name="role_workflows")
    op.drop_table("role_workflows")
    op.drop_index(op.f("ix_role_dashboards_company_id"), table_name="role_dashboards")
    op.drop_table("role_dashboards")
    op.drop_index(op.f("ix_role_batches_expires_at"), table_name="role_batches")
    op.drop_index("ix_role_batches_company_created", table_name="role_batches")
    op.drop_table("role_batches")
    op.drop_table("role_batch_tombstones")
