"""A small, known data set for the configured batch tests (part B): users, categories with
user references (some pointing at users that do not exist), preferences and their groups.

Kept apart from the demo data so the tests can count on exact numbers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
from batch_pipelines.configured_batches.groups import plan_membership
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE
from batch_pipelines.configured_batches.preferences import Preference, PreferenceStore
from batch_pipelines.store.configured_batches_tables import categories, category_items, system_users

ACTIVE_USERS = [f"user_{i:04d}" for i in range(1, 21)]  # 20 active users
INACTIVE_USER = "user_0099"
GHOST_USER = "ghost_0001"  # referenced by a category item, not in system_users
CATEGORIES = {
    "product_category": 6,
    "audience_preferences": 4,
    "niche_topics": 3,
}


def seed(engine: sa.Engine) -> None:
    """The users, categories and items above (those already there are left alone)."""
    now = datetime.now(UTC)
    users = [
        {
            "id": uid,
            "tenant_id": "tenant_a" if i % 2 else "tenant_b",
            "name": f"User {i}",
            "email": f"{uid}@example.com",
            "active": True,
            "attributes": {"role": "manager" if i <= 4 else "analyst"},
            "created_at": now,
        }
        for i, uid in enumerate(ACTIVE_USERS, start=1)
    ]
    users.append(
        {
            "id": INACTIVE_USER,
            "tenant_id": "tenant_a",
            "name": "Gone",
            "email": None,
            "active": False,
            "attributes": {},
            "created_at": now,
        }
    )
    cats = [
        {"id": c, "description": c.replace("_", " "), "data": {}, "created_at": now}
        for c in CATEGORIES
    ]
    items: list[dict[str, Any]] = []
    for c, n in CATEGORIES.items():
        for k in range(n):
            refs = [ACTIVE_USERS[k % len(ACTIVE_USERS)], ACTIVE_USERS[(k + 1) % len(ACTIVE_USERS)]]
            if k == 0:
                refs.append(GHOST_USER)
            items.append(
                {
                    "id": f"{c}-{k}",
                    "category_id": c,
                    "tenant_id": "tenant_a",
                    "data": {"name": f"{c} item {k}", "score": k},
                    "user_ids": refs,
                    "position": k,
                    "created_at": now,
                }
            )
    # PostgreSQL tests share one database per session: seeding twice adds nothing.
    with engine.begin() as conn:
        for table, rows in ((system_users, users), (categories, cats), (category_items, items)):
            existing = set(conn.execute(sa.select(table.c.id)).scalars())
            new = [r for r in rows if r["id"] not in existing]
            if new:
                conn.execute(table.insert(), new)


def add_preferences(engine: sa.Engine, preferences: list[dict[str, Any]]) -> list[Preference]:
    """Store preferences and put their users in their groups (what the change sensor does)."""
    parsed = [Preference.parse(p, where="test") for p in preferences]
    PreferenceStore(engine).upsert(parsed)
    groups = PreferenceGroupStore(engine)
    plan = plan_membership(parsed, groups.memberships((p.user_id, p.feature_type) for p in parsed))
    groups.apply(plan)
    return parsed


def job_file(tmp_path: Path, edit=None, name: str = "jobs.json") -> Path:
    """A copy of the shipped sample, optionally edited (``edit(raw)`` changes it in place)."""
    raw = json.loads(SAMPLE_JOBS_FILE.read_text())
    if edit is not None:
        edit(raw)
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path
