"""Document AI: document jobs and reference passages for retrieval, per project.

Frozen: the tables are written out as they stood at this revision.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_passages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=200), nullable=False),
        sa.Column("document", sa.String(length=400), nullable=False),
        sa.Column("passage_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_passages")),
        sa.UniqueConstraint(
            "project_id", "document", "passage_index", name="uq_reference_passages_doc_index"
        ),
    )
    op.create_index(
        "ix_reference_passages_project", "reference_passages", ["project_id"], unique=False
    )
    op.create_table(
        "document_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("project_id", sa.String(length=200), nullable=False),
        sa.Column("pipeline", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("current_phase", sa.String(length=100), nullable=True),
        sa.Column("runner_id", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_document_jobs_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_jobs")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_document_jobs_batch_id")),
    )
    op.create_index(
        op.f("ix_document_jobs_project_id"), "document_jobs", ["project_id"], unique=False
    )
    op.create_index(op.f("ix_document_jobs_status"), "document_jobs", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_document_jobs_status"), table_name="document_jobs")
    op.drop_index(op.f("ix_document_jobs_project_id"), table_name="document_jobs")
    op.drop_table("document_jobs")
    op.drop_index("ix_reference_passages_project", table_name="reference_passages")
    op.drop_table("reference_passages")
