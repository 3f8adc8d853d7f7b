"""Configured and preference batches: users, categories, preferences, groups.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from batch_pipelines.store import configured_batches_tables
from batch_pipelines.store.schema import metadata

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fresh database already has these from the baseline (which builds today's schema);
    # one migrated earlier gets them here.
    metadata.create_all(
        bind=op.get_bind(), tables=configured_batches_tables.TABLES, checkfirst=True
    )


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind(), tables=list(reversed(configured_batches_tables.TABLES)))
