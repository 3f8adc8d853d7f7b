"""Document AI: reference passages for retrieval, per project.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from batch_pipelines.store import document_ai_tables
from batch_pipelines.store.schema import metadata

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fresh database already has these from the baseline (which builds today's schema);
    # one migrated earlier gets them here.
    metadata.create_all(bind=op.get_bind(), tables=document_ai_tables.TABLES, checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind(), tables=list(reversed(document_ai_tables.TABLES)))
