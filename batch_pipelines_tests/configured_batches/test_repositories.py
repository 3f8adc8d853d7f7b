"""Users and category data read straight from the store: chunked validation, cache, fallback."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from batch_pipelines.configured_batches.demo_data import UNKNOWN_USERS, seed_demo_data
from batch_pipelines.configured_batches.preferences import ConfigDatabaseClient
from batch_pipelines.configured_batches.repositories import (
    CategoryRepository,
    CategorySourceUnavailable,
    UserRepository,
    validate_references,
)
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.store.configured_batches_tables import categories, category_items, system_users
from batch_pipelines_tests.configured_batches.family_tables import empty_family_tables

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(store):
    return empty_family_tables(store.engine)


def add_users(engine, users):
    with engine.begin() as conn:
        conn.execute(
            system_users.insert(),
            [
                {
                    "name": u[0].upper(),
                    "email": None,
                    "attributes": {},
                    "created_at": NOW,
                    **dict(zip(("id", "tenant_id", "active"), u, strict=True)),
                }
                for u in users
            ],
        )


def test_validation_splits_ids_into_active_users_and_the_rest_with_statistics(engine):
    add_users(
        engine, [("a", "t1", True), ("b", "t1", True), ("gone", "t1", False), ("other", "t2", True)]
    )
    result = UserRepository(engine).validate(
        ["b", "a", "ghost", "gone", "a", "", "other"], tenant_id="t1"
    )
    assert result.valid == ["b", "a"]
    assert result.invalid == ["ghost", "gone", "", "other"]
    assert result.stats == {"total": 6, "valid": 2, "invalid": 4, "chunks": 1}


def test_validation_makes_one_query_per_chunk_not_per_user(engine, monkeypatch):
    add_users(engine, [(f"u{i:04d}", "t1", True) for i in range(2500)])
    queries: list[int] = []
    one_query = UserRepository._active_ids

    def counted(self, conn, chunk, tenant_id):
        queries.append(len(chunk))
        return one_query(self, conn, chunk, tenant_id)

    monkeypatch.setattr(UserRepository, "_active_ids", counted)
    result = UserRepository(engine, chunk_size=1000).validate([f"u{i:04d}" for i in range(3000)])
    assert queries == [1000, 1000, 1000] and result.stats["chunks"] == 3
    assert (len(result.valid), len(result.invalid)) == (2500, 500)
    assert result.valid[:2] == ["u0000", "u0001"] and result.invalid[0] == "u2500"


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ConfigurationError, match="chunk_size"):
        UserRepository(sa.create_engine("sqlite://"), chunk_size=0)


def test_users_are_read_by_id_and_found_by_column_or_attribute_filters(engine):
    add_users(engine, [("a", "t1", True), ("b", "t2", True), ("c", "t1", False), ("d", "t1", True)])
    with engine.begin() as conn:
        conn.execute(
            system_users.update()
            .where(system_users.c.id == "d")
            .values(attributes={"role": "editor"})
        )
    users = UserRepository(engine)
    assert set(users.get_users(["a", "c", "zzz"])) == {"a", "c"}
    assert users.get_users(["a"])["a"]["tenant_id"] == "t1"
    assert [u["id"] for u in users.find_users({"active": True})] == ["a", "b", "d"]
    assert [
        u["id"] for u in users.find_users({"tenant_id": ["t1", "t2"], "active": True}, limit=2)
    ] == ["a", "b"]
    assert [u["id"] for u in users.find_users({"role": "editor"})] == ["d"]


def add_category(engine, name, items):
    with engine.begin() as conn:
        conn.execute(
            categories.insert(), [{"id": name, "description": None, "data": {}, "created_at": NOW}]
        )
        conn.execute(
            category_items.insert(),
            [
                {
                    "id": item_id,
                    "category_id": name,
                    "tenant_id": tenant,
                    "data": data,
                    "user_ids": refs,
                    "position": i,
                    "created_at": NOW,
                }
                for i, (item_id, tenant, data, refs) in enumerate(items)
            ],
        )


def products(engine):
    add_category(
        engine,
        "products",
        [
            ("p1", "t1", {"segment": "home"}, ["a"]),
            ("p2", "t2", {"segment": "office"}, ["b", "ghost"]),
            ("p3", "t1", {"segment": "home"}, []),
        ],
    )


def test_category_items_come_by_filters_and_limit_in_the_categorys_order(engine):
    products(engine)
    repo = CategoryRepository(engine)
    assert [i.id for i in repo.items("products")] == ["p1", "p2", "p3"]
    assert [i.id for i in repo.items("products", {"segment": "home"})] == ["p1", "p3"]
    assert [i.id for i in repo.items("products", {"segment": "home"}, limit=1)] == ["p1"]
    assert [i.id for i in repo.items("products", {"tenant_id": "t2"})] == ["p2"]
    assert repo.items("products")[1].user_ids == ["b", "ghost"]
    assert repo.category("products")["id"] == "products"


def test_category_items_are_cached_until_the_ttl_runs_out(engine):
    products(engine)
    ticks = [0.0]
    repo = CategoryRepository(engine, ttl_seconds=30, clock=lambda: ticks[0])
    repo.items("products")
    with engine.begin() as conn:
        conn.execute(
            category_items.update()
            .where(category_items.c.id == "p1")
            .values(data={"segment": "garden"})
        )
    assert repo.items("products")[0].data == {"segment": "home"}
    ticks[0] = 31
    assert repo.items("products")[0].data == {"segment": "garden"}


def test_when_the_source_fails_the_last_good_snapshot_is_served(engine):
    products(engine)
    ticks = [0.0]
    repo = CategoryRepository(engine, ttl_seconds=1, clock=lambda: ticks[0])
    before = repo.items("products")
    ticks[0] = 10
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE category_items RENAME TO category_items_away"))
    try:
        assert repo.items("products") == before
        assert repo.fallbacks == 1 and repo.last_error
        with pytest.raises(CategorySourceUnavailable, match="'products'"):
            repo.items("products", {"segment": "office"})  # never read: nothing to fall back on
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE category_items_away RENAME TO category_items"))


def test_users_referenced_by_items_are_validated_like_direct_users(engine):
    add_users(engine, [("a", "t1", True), ("b", "t2", True)])
    products(engine)
    result = validate_references(
        CategoryRepository(engine).items("products"), UserRepository(engine)
    )
    assert (result.valid, result.invalid) == (["a", "b"], ["ghost"])


def test_demo_data_seeds_tenants_users_categories_and_preferences_once(engine):
    first = seed_demo_data(engine, users=60, clock=lambda: NOW)
    again = seed_demo_data(engine, users=60, clock=lambda: NOW)
    assert first.added_users == 60 and again.added_users == 0
    assert (again.users, again.categories, again.preferences) == (60, 3, first.preferences)
    assert again.inactive_users >= 1 and again.preferences > 60
    items = CategoryRepository(engine).items("product_category")
    references = validate_references(items, UserRepository(engine))
    assert set(references.invalid) & set(UNKNOWN_USERS)
    daily = ConfigDatabaseClient.from_store(engine).preferences_for("daily_digest")
    assert daily and all(p.feature_type == "daily_digest" for p in daily)


def _sqlite_store(tmp_path):
    from batch_pipelines.store.batch_store import BatchStore

    return BatchStore(f"sqlite:///{tmp_path / 'snapshots.db'}")


def test_a_refresh_that_finds_the_same_items_keeps_no_new_snapshot(tmp_path, monkeypatch):
    from batch_pipelines.configured_batches.contexts import ContextStore

    store = _sqlite_store(tmp_path)
    products(store.engine)
    kept: list[str] = []
    real_put = ContextStore.put

    def put(self, kind, key, data, **kw):
        kept.append(key)
        real_put(self, kind, key, data, **kw)

    monkeypatch.setattr(ContextStore, "put", put)
    now = [0.0]
    repo = CategoryRepository(
        store.engine, ttl_seconds=10, clock=lambda: now[0], durable_snapshots=True
    )
    first = repo.items("products", {"segment": "home"})
    now[0] = 60.0  # past the TTL: read again, same items
    assert repo.items("products", {"segment": "home"}) == first
    assert len(kept) == 1
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM category_items WHERE id = :id"), {"id": first[0].id})
    now[0] = 120.0  # the items changed: kept again
    assert repo.items("products", {"segment": "home"}) == first[1:]
    assert len(kept) == 2
    store.dispose()


def test_a_later_repository_falls_back_to_the_snapshot_an_earlier_one_kept_in_the_store(tmp_path):
    store = _sqlite_store(tmp_path)
    engine = store.engine
    products(engine)
    first = CategoryRepository(engine, durable_snapshots=True).items(
        "products", {"segment": "home"}, limit=5
    )
    other_selection = CategoryRepository(engine, durable_snapshots=True).items(
        "products", {"segment": "office"}
    )
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE category_items RENAME TO category_items_away"))
        conn.execute(sa.text("ALTER TABLE categories RENAME TO categories_away"))
    later = CategoryRepository(engine, durable_snapshots=True)
    assert later.category("products")["id"] == "products"
    assert later.items("products", {"segment": "home"}, limit=5) == first
    assert (
        later.items("products", {"segment": "office"}) == other_selection
    )  # each selection its own snapshot
    assert later.fallbacks == 2 and later.last_error == "OperationalError"
    with pytest.raises(CategorySourceUnavailable):
        later.items("products", {"segment": "garden"})  # never read: nothing to fall back on
    with pytest.raises(CategorySourceUnavailable):
        later.category("never_read")
    with pytest.raises(CategorySourceUnavailable):
        CategoryRepository(engine).items(
            "products", {"segment": "home"}, limit=5
        )  # not durable: no snapshot
    store.dispose()
