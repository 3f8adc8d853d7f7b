"""Preference group membership and tick claims in the store.

The preference-change sensor records here which group each user is in (with the preference
that put them there), and a group's run reads its members here at run time, so a user moved
by one sensor tick is processed with the new preference by the next run. Tick claims make
"one run per group and tick" hold across both preference sensors and across machines: the
first sensor to claim a tick launches it, the other leaves it alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from batch_pipelines.configured_batches.groups import MemberId, MembershipPlan
from batch_pipelines.configured_batches.preferences import Preference
from batch_pipelines.core.sequences import chunks
from batch_pipelines.store.configured_batches_tables import (
    preference_group_members,
    preference_group_ticks,
)
from batch_pipelines.store.database import insert_new_rows

_CHUNK = 1000


class PreferenceGroupStore:
    """Membership of preference groups and claims of their ticks (SQLAlchemy Core)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # -- membership ---------------------------------------------------------------------

    def memberships(self, members: Iterable[MemberId]) -> dict[MemberId, str]:
        """Current group (partition key) of each given member that is in one."""
        by_feature: dict[str, list[str]] = {}
        for user_id, feature_type in members:
            by_feature.setdefault(feature_type, []).append(user_id)
        t = preference_group_members.c
        found: dict[MemberId, str] = {}
        with self.engine.connect() as conn:
            for feature_type, users in by_feature.items():
                unique = list(dict.fromkeys(users))
                for chunk in chunks(unique, _CHUNK):
                    rows = conn.execute(
                        sa.select(t.user_id, t.partition_key).where(
                            t.feature_type == feature_type, t.user_id.in_(chunk)
                        )
                    )
                    found.update({(row.user_id, feature_type): row.partition_key for row in rows})
        return found

    def apply(self, plan: MembershipPlan, *, now: datetime | None = None) -> None:
        """Write a membership plan in one transaction (idempotent: applying it twice leaves
        the same rows)."""
        if not plan.upserts and not plan.removals:
            return
        now = now or datetime.now(UTC)
        t = preference_group_members
        touched = list(plan.removals) + list(plan.upserts)
        with self.engine.begin() as conn:
            # Delete then insert: one statement shape for both backends and for new and
            # moved members alike.
            by_feature: dict[str, list[str]] = {}
            for user_id, feature_type in touched:
                by_feature.setdefault(feature_type, []).append(user_id)
            for feature_type, users in by_feature.items():
                for chunk in chunks(users, _CHUNK):
                    conn.execute(
                        t.delete().where(t.c.feature_type == feature_type, t.c.user_id.in_(chunk))
                    )
            rows = [
                {
                    "user_id": user_id,
                    "feature_type": feature_type,
                    "tenant_id": pref.tenant_id,
                    "partition_key": partition_key,
                    "preference": pref.to_record(),
                    "updated_at": now,
                }
                for (user_id, feature_type), (partition_key, pref) in plan.upserts.items()
            ]
            if rows:
                conn.execute(t.insert(), rows)

    def partition_keys(self) -> set[str]:
        """Every group that has at least one member: the partitions that should exist."""
        t = preference_group_members.c
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(t.partition_key).distinct()).scalars())

    def with_members(self, partition_keys: Iterable[str]) -> set[str]:
        """Those of ``partition_keys`` that still have a member."""
        keys = sorted(set(partition_keys))
        t = preference_group_members.c
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(keys, _CHUNK):
                found.update(
                    conn.execute(
                        sa.select(t.partition_key).where(t.partition_key.in_(chunk)).distinct()
                    ).scalars()
                )
        return found

    def members(self, partition_key: str) -> list[Preference]:
        """The group's members with the preference that put them there, by user id."""
        t = preference_group_members.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.preference).where(t.partition_key == partition_key).order_by(t.user_id)
            ).scalars()
            return [Preference.model_validate(record) for record in rows]

    def member_counts(self) -> dict[str, int]:
        t = preference_group_members.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.partition_key, sa.func.count()).group_by(t.partition_key)
            )
            return {key: count for key, count in rows}

    # -- tick claims --------------------------------------------------------------------

    def claim_ticks(
        self, claimant: str, ticks: Sequence[tuple[str, datetime]], *, now: datetime | None = None
    ) -> list[tuple[str, datetime]]:
        """Claim ``ticks`` (partition key, tick) for ``claimant``; return those it owns,
        in the given order: the newly claimed and those it had claimed before (so a sensor
        whose result was lost re-requests them, and Dagster's run key keeps that harmless)."""
        if not ticks:
            return []
        now = now or datetime.now(UTC)
        t = preference_group_ticks
        rows = [
            {
                "partition_key": key,
                "tick_at": tick.astimezone(UTC),
                "claimed_by": claimant,
                "claimed_at": now,
            }
            for key, tick in dict.fromkeys(ticks)
        ]
        owned: set[tuple[str, datetime]] = set()
        with self.engine.begin() as conn:
            conn.execute(insert_new_rows(self.engine.dialect.name, t), rows)
            keys = sorted({row["partition_key"] for row in rows})
            stamps = [row["tick_at"] for row in rows]
            for chunk in chunks(keys, _CHUNK):
                found = conn.execute(
                    sa.select(t.c.partition_key, t.c.tick_at).where(
                        t.c.partition_key.in_(chunk),
                        t.c.tick_at.between(min(stamps), max(stamps)),
                        t.c.claimed_by == claimant,
                    )
                )
                owned.update((row.partition_key, row.tick_at) for row in found)
        return [(key, tick) for key, tick in ticks if (key, tick.astimezone(UTC)) in owned]

    def claims(self, partition_key: str) -> Mapping[datetime, str]:
        t = preference_group_ticks.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.tick_at, t.claimed_by).where(t.partition_key == partition_key)
            )
            return {row.tick_at: row.claimed_by for row in rows}
