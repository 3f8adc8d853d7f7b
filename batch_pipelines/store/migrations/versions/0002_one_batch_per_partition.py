"""One batch per family, batch type and partition.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME = "uq_batches_family_type_partition"


def upgrade() -> None:
    # The baseline builds today's schema, so a fresh database already has the constraint;
    # a database migrated to 0001 earlier gets it here.
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_unique_constraints("batches")}
    if NAME not in existing:
        with op.batch_alter_table("batches") as batch:
            batch.create_unique_constraint(NAME, ["family", "batch_type", "partition_key"])


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(NAME, type_="unique")
