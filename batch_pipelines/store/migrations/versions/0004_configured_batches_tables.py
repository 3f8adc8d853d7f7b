"""Configured and preference batches: users, categories, preferences, groups.

Frozen: the tables are written out as they stood at this revision.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
    )
    op.create_table(
        "preference_group_members",
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("feature_type", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("partition_key", sa.String(length=400), nullable=False),
        sa.Column("preference", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "feature_type", name=op.f("pk_preference_group_members")
        ),
    )
    op.create_index(
        op.f("ix_preference_group_members_partition_key"),
        "preference_group_members",
        ["partition_key"],
        unique=False,
    )
    op.create_table(
        "preference_group_ticks",
        sa.Column("partition_key", sa.String(length=400), nullable=False),
        sa.Column("tick_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partition_key", "tick_at", name=op.f("pk_preference_group_ticks")),
    )
    op.create_table(
        "system_users",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("email", sa.String(length=400), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_users")),
    )
    op.create_index(op.f("ix_system_users_tenant_id"), "system_users", ["tenant_id"], unique=False)
    op.create_table(
        "user_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("feature_type", sa.String(length=200), nullable=False),
        sa.Column("frequency", sa.String(length=20), nullable=False),
        sa.Column("preferred_day", sa.String(length=20), nullable=True),
        sa.Column("preferred_time", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("template_overrides", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_preferences")),
        sa.UniqueConstraint("user_id", "feature_type", name="uq_user_preferences_user_feature"),
    )
    op.create_index(
        op.f("ix_user_preferences_feature_type"), "user_preferences", ["feature_type"], unique=False
    )
    op.create_index(
        "ix_user_preferences_updated", "user_preferences", ["updated_at", "id"], unique=False
    )
    op.create_table(
        "category_items",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("category_id", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("user_ids", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name=op.f("fk_category_items_category_id_categories"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category_items")),
    )
    op.create_index(
        op.f("ix_category_items_category_id"), "category_items", ["category_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_category_items_category_id"), table_name="category_items")
    op.drop_table("category_items")
    op.drop_index("ix_user_preferences_updated", table_name="user_preferences")
    op.drop_index(op.f("ix_user_preferences_feature_type"), table_name="user_preferences")
    op.drop_table("user_preferences")
    op.drop_index(op.f("ix_system_users_tenant_id"), table_name="system_users")
    op.drop_table("system_users")
    op.drop_table("preference_group_ticks")
    op.drop_index(
        op.f("ix_preference_group_members_partition_key"), table_name="preference_group_members"
    )
    op.drop_table("preference_group_members")
    op.drop_table("categories")
