"""Tables of the configured batches family.

They hang off the shared metadata of ``schema.py`` (which imports this module, so the
metadata is always complete) and are created by migration 0004.

- ``system_users``: the users batches are run for; read directly (set-based, chunked) to
  validate ids before any request is made, instead of one user-service call per user.
- ``categories`` / ``category_items``: the data category batches process; an item may name
  the users it concerns (``user_ids``), which are validated like direct users.
- ``user_preferences``: when and how each user wants a feature (the config database when no
  config service URL is set). Rows are never deleted, a deletion is a tombstone
  (``deleted``), so the preference-change sensor, which reads by ``updated_at``, sees it.
- ``preference_group_members``: which preference group (a partition key) each user is in for
  a feature type, with the preference that put them there. Maintained by the
  preference-change sensor; a group's run reads its members here at run time.
- ``preference_group_ticks``: one row per group and scheduled tick, claimed by the sensor that
  launches it, so the scheduling and the preference-change sensors never both launch one tick.
"""

from __future__ import annotations

import sqlalchemy as sa

from batch_pipelines.store.schema import UTCDateTime, metadata

_ts = UTCDateTime()

system_users = sa.Table(
    "system_users",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("tenant_id", sa.String(200), nullable=False, index=True),
    sa.Column("name", sa.String(400)),
    sa.Column("email", sa.String(400)),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("attributes", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", _ts, nullable=False),
)

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("data", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", _ts, nullable=False),
)

category_items = sa.Table(
    "category_items",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column(
        "category_id", sa.String(200), sa.ForeignKey("categories.id"), nullable=False, index=True
    ),
    sa.Column("tenant_id", sa.String(200)),
    sa.Column("data", sa.JSON, nullable=False, default=dict),
    sa.Column("user_ids", sa.JSON, nullable=False, default=list),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", _ts, nullable=False),
)

user_preferences = sa.Table(
    "user_preferences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.String(200), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("feature_type", sa.String(200), nullable=False, index=True),
    sa.Column("frequency", sa.String(20), nullable=False),
    sa.Column("preferred_day", sa.String(20)),
    sa.Column("preferred_time", sa.String(5), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("template_overrides", sa.JSON, nullable=False, default=dict),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", _ts, nullable=False),
    sa.UniqueConstraint("user_id", "feature_type", name="uq_user_preferences_user_feature"),
    sa.Index("ix_user_preferences_updated", "updated_at", "id"),
)

preference_group_members = sa.Table(
    "preference_group_members",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("feature_type", sa.String(200), primary_key=True),
    sa.Column("tenant_id", sa.String(200), nullable=False),
    sa.Column("partition_key", sa.String(400), nullable=False, index=True),
    sa.Column("preference", sa.JSON, nullable=False),
    sa.Column("updated_at", _ts, nullable=False),
)

preference_group_ticks = sa.Table(
    "preference_group_ticks",
    metadata,
    sa.Column("partition_key", sa.String(400), primary_key=True),
    sa.Column("tick_at", _ts, primary_key=True),
    sa.Column("claimed_by", sa.String(200), nullable=False),
    sa.Column("claimed_at", _ts, nullable=False),
)

# Every table of this module, in creation order (migration 0004 creates these).
TABLES: list[sa.Table] = [
    system_users,
    categories,
    category_items,
    user_preferences,
    preference_group_members,
    preference_group_ticks,
]
