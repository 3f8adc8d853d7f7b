"""Role onboarding: batch records and role state.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from batch_pipelines.store import role_onboarding_tables
from batch_pipelines.store.schema import metadata

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fresh database already has these from the baseline (which builds today's schema);
    # one migrated earlier gets them here.
    metadata.create_all(bind=op.get_bind(), tables=role_onboarding_tables.TABLES, checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind(), tables=list(reversed(role_onboarding_tables.TABLES)))
