"""Demo data for configured and preference batches: tenants, users, categories, preferences.

The embedded default has no user directory, catalogue or config database to read, so the
demo, the sample job file and manual runs in the UI need these tables filled with something
that looks like a small multi-tenant customer base: a few tenants, a few hundred users (some
inactive, so validation has something to drop), the categories the sample jobs name (with
items that reference users, a few of them unknown) and preferences for the sample feature
types spread over frequencies, times and timezones (so there are many preference groups).

Deterministic for a seed, and seeding twice adds nothing: rows that exist are left alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from batch_pipelines.configured_batches.preferences import Preference, PreferenceStore
from batch_pipelines.store.configured_batches_tables import (
    categories,
    category_items,
    system_users,
    user_preferences,
)

TENANTS: dict[str, tuple[str, ...]] = {
    "acme": ("Europe/Paris", "Europe/London"),
    "globex": ("America/New_York", "America/Los_Angeles"),
    "initech": ("Asia/Tokyo", "UTC"),
}
FEATURE_TYPES = ("daily_digest", "product_picks", "activity_report", "topic_briefing")
TIMES = ("07:00", "08:00", "09:00", "12:30", "17:00", "18:00")
# Ids of users that category items reference but that do not exist: validation drops them.
UNKNOWN_USERS = ("user_9001", "user_9002")
SEEDED_AGO = timedelta(minutes=1)
_FIRST = (
    "Ada",
    "Brook",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivo",
    "Juno",
    "Kofi",
    "Lena",
)
_LAST = ("Moreau", "Okafor", "Silva", "Tanaka", "Novak", "Berg", "Rossi", "Khan", "Ortiz", "Weber")
_CATEGORIES: dict[str, str] = {
    "product_category": "Products of the catalogue, with the users who follow them.",
    "audience_preferences": "Audience segments and what they engage with.",
    "niche_topics": "Niche topics the editorial team tracks.",
}
_OVERRIDES: tuple[dict[str, Any], ...] = (
    {},
    {},
    {"tone": "formal"},
    {"length": "long"},
    {"tone": "playful"},
)


@dataclass(frozen=True)
class DemoData:
    """What the tables hold for the demo after seeding (counts, not only what was added)."""

    tenants: int
    users: int
    inactive_users: int
    categories: int
    category_items: int
    preferences: int
    added_users: int


def user_id(number: int) -> str:
    return f"user_{number:04d}"


def seed_demo_data(
    engine: sa.Engine,
    *,
    users: int = 300,
    seed: int = 7,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC) - SEEDED_AGO,
) -> DemoData:
    """Fill the family's tables with demo data; existing rows are kept as they are.

    Rows are stamped a minute ago by default: demo data stands for data that was already
    there, so the preference-change sensor (which holds back the last seconds of writes)
    reads it on its first evaluation."""
    rng = random.Random(seed)
    now = clock()
    tenants = list(TENANTS)
    user_rows: list[dict[str, Any]] = []
    for number in range(1, users + 1):
        tenant = tenants[(number - 1) % len(tenants)]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        user_rows.append(
            {
                "id": user_id(number),
                "tenant_id": tenant,
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}.{number}@{tenant}.example",
                # The first users stay active: the sample jobs send results to them.
                "active": number <= 10 or rng.random() >= 0.05,
                "attributes": {
                    "role": rng.choice(("editor", "analyst", "manager")),
                    "plan": rng.choice(("free", "pro")),
                },
                "created_at": now,
            }
        )
    item_rows = _category_items(rng, [u["id"] for u in user_rows], now)
    preferences = _preferences(rng, user_rows)

    with engine.begin() as conn:
        existing = set(conn.execute(sa.select(system_users.c.id)).scalars())
        new_users = [u for u in user_rows if u["id"] not in existing]
        if new_users:
            conn.execute(system_users.insert(), new_users)
        existing_categories = set(conn.execute(sa.select(categories.c.id)).scalars())
        new_categories = [
            {"id": name, "description": text, "data": {"name": name}, "created_at": now}
            for name, text in _CATEGORIES.items()
            if name not in existing_categories
        ]
        if new_categories:
            conn.execute(categories.insert(), new_categories)
        existing_items = set(conn.execute(sa.select(category_items.c.id)).scalars())
        new_items = [i for i in item_rows if i["id"] not in existing_items]
        if new_items:
            conn.execute(category_items.insert(), new_items)

    with engine.connect() as conn:
        t = user_preferences.c
        stored = set(conn.execute(sa.select(t.user_id, t.feature_type)).tuples())
    PreferenceStore(engine, clock=clock).upsert(
        [p for p in preferences if (p.user_id, p.feature_type) not in stored]
    )

    with engine.connect() as conn:

        def count(table: sa.Table, *where: Any) -> int:
            return conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()

        return DemoData(
            tenants=len(TENANTS),
            users=count(system_users),
            inactive_users=count(system_users, system_users.c.active.is_(False)),
            categories=count(categories),
            category_items=count(category_items),
            preferences=count(user_preferences, user_preferences.c.deleted.is_(False)),
            added_users=len(new_users),
        )


def _category_items(rng: random.Random, user_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    tenants = list(TENANTS)

    def add(category: str, index: int, data: dict[str, Any], references: list[str]) -> None:
        rows.append(
            {
                "id": f"{category}-{index:03d}",
                "category_id": category,
                "tenant_id": tenants[index % len(tenants)],
                "data": data,
                "user_ids": references,
                "position": index,
                "created_at": now,
            }
        )

    segments = ("outdoor", "home", "office", "kids")
    for i in range(1, 31):
        references = rng.sample(user_ids, k=rng.randint(1, 3))
        if i % 10 == 0:
            references.append(UNKNOWN_USERS[(i // 10) % len(UNKNOWN_USERS)])
        add(
            "product_category",
            i,
            {
                "name": f"Product {i:03d}",
                "segment": segments[i % len(segments)],
                "price": round(5 + 3.5 * i, 2),
            },
            references,
        )
    for i, (segment, interest) in enumerate(
        [
            ("students", "gaming"),
            ("parents", "cooking"),
            ("retirees", "travel"),
            ("founders", "finance"),
            ("nurses", "wellbeing"),
            ("engineers", "robotics"),
            ("artists", "design"),
            ("farmers", "weather"),
        ],
        start=1,
    ):
        add(
            "audience_preferences",
            i,
            {"name": segment, "interest": interest, "share": round(rng.uniform(2, 20), 1)},
            rng.sample(user_ids, k=2),
        )
    for i, topic in enumerate(
        [
            "urban beekeeping",
            "retro computing",
            "fermentation",
            "microvolunteering",
            "tiny houses",
            "sea kayaking",
            "bookbinding",
            "mycology",
            "amateur radio",
            "sourdough",
        ],
        start=1,
    ):
        add(
            "niche_topics",
            i,
            {"name": topic, "momentum": rng.choice(("rising", "steady", "fading"))},
            [],
        )
    return rows


def _preferences(rng: random.Random, user_rows: list[dict[str, Any]]) -> list[Preference]:
    prefs: list[Preference] = []
    weekdays = ("monday", "wednesday", "friday")
    for user in user_rows:
        zones = TENANTS[user["tenant_id"]]
        for feature_type in FEATURE_TYPES:
            if rng.random() < 0.35:
                continue  # not every user uses every feature
            if feature_type in ("daily_digest", "topic_briefing"):
                frequency = rng.choice(("daily", "daily", "daily", "hourly"))
            else:
                frequency = rng.choice(("weekly", "weekly", "biweekly", "monthly"))
            day: str | None = None
            if frequency in ("weekly", "biweekly"):
                day = rng.choice(weekdays)
            elif frequency == "monthly":
                day = str(rng.choice((1, 15)))
            time_ = "00:15" if frequency == "hourly" else rng.choice(TIMES)
            prefs.append(
                Preference(
                    tenant_id=user["tenant_id"],
                    user_id=user["id"],
                    feature_type=feature_type,
                    frequency=frequency,
                    preferred_day=day,
                    preferred_time=time_,
                    timezone=rng.choice(zones),
                    template_overrides=dict(rng.choice(_OVERRIDES)),
                )
            )
    return prefs
