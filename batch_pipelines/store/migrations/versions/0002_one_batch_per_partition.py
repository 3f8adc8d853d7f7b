"""One batch per family, batch type and partition.

Frozen: adds the constraint to the ``batches`` table of 0001. SQLite cannot add a
constraint to a table, so there the batch mode copies the table into a new one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME = "uq_batches_family_type_partition"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.create_unique_constraint(NAME, ["family", "batch_type", "partition_key"])


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(NAME, type_="unique")
