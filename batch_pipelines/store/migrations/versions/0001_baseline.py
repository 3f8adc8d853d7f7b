"""Baseline schema.

The baseline creates the tables of ``schema.py`` as they stood when it was written; every
later change is a revision of its own with explicit operations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from batch_pipelines.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.metadata.create_all(bind=op.get_bind())


def downgrade() -> None:
    schema.metadata.drop_all(bind=op.get_bind())
