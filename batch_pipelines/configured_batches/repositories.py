"""Users and category data, read straight from the store.

``UserRepository`` validates user ids against ``system_users`` before any request is made:
one set-based query per chunk of ids, never one query (or user-service call) per user, so
validating a hundred thousand ids costs a hundred queries. Invalid ids (unknown, inactive,
of another tenant, malformed) are returned separately with statistics so a batch can drop
and record them.

``CategoryRepository`` serves category items by filters and limits with a TTL cache, and
falls back to the last good snapshot when the source fails, so a short database outage does
not fail a scheduled batch. Items may reference users; ``validate_references`` checks them
the same way as direct users.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from batch_pipelines.configured_batches.contexts import CATEGORY_SNAPSHOT, ContextStore
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines.core.sequences import chunks
from batch_pipelines.store.configured_batches_tables import categories, category_items, system_users

logger = logging.getLogger("batch_pipelines.configured_batches")

_USER_COLUMNS = ("id", "tenant_id", "name", "email", "active", "attributes")
# Positional parameter markers of the drivers whose validation query skips Core.
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_TRUE = {"sqlite": "1", "postgresql": "true"}


class CategorySourceUnavailable(BatchPipelinesError):
    """Category data could not be read and no earlier snapshot exists to fall back on."""

    code = "BP-CATEGORY-SOURCE-UNAVAILABLE"


@dataclass(frozen=True)
class UserValidation:
    """Valid and invalid ids, each in input order without duplicates, and statistics
    (``total``, ``valid``, ``invalid``, ``chunks`` = queries made)."""

    valid: list[str]
    invalid: list[str]
    stats: dict[str, int]


class UserRepository:
    """Reads ``system_users`` directly, in chunks of ``chunk_size`` ids per query."""

    def __init__(self, engine: sa.Engine, chunk_size: int = 1000):
        if chunk_size < 1:
            raise ConfigurationError(f"user validation chunk_size must be >= 1, got {chunk_size}")
        self.engine = engine
        self.chunk_size = chunk_size

    def validate(self, user_ids: Sequence[str], tenant_id: str | None = None) -> UserValidation:
        """Split ``user_ids`` into active users (of ``tenant_id`` when given) and the rest."""
        unique = list(dict.fromkeys(user_ids))
        candidates = [u for u in unique if isinstance(u, str) and u.strip()]
        found: set[str] = set()
        queries = 0
        with self.engine.connect() as conn:
            for chunk in chunks(candidates, self.chunk_size):
                found.update(self._active_ids(conn, chunk, tenant_id))
                queries += 1
        valid = [u for u in unique if u in found]
        invalid = [u for u in unique if u not in found]
        return UserValidation(
            valid=valid,
            invalid=invalid,
            stats={
                "total": len(unique),
                "valid": len(valid),
                "invalid": len(invalid),
                "chunks": queries,
            },
        )

    def _active_ids(
        self, conn: sa.Connection, chunk: Sequence[str], tenant_id: str | None
    ) -> list[str]:
        """The active ids of one chunk, in one query.

        With a driver of positional parameters (SQLite, psycopg) the statement goes to the
        driver directly: SQLAlchemy's per-value coercion and per-row result processing cost
        several times the query itself at a thousand ids per chunk. Other drivers go
        through Core.
        """
        marker = _MARKERS.get(self.engine.dialect.paramstyle)
        true = _TRUE.get(self.engine.dialect.name)
        if marker is None or true is None:
            t = system_users.c
            query = sa.select(t.id).where(t.id.in_(chunk), t.active.is_(True))
            if tenant_id is not None:
                query = query.where(t.tenant_id == tenant_id)
            return list(conn.execute(query).scalars())
        sql = (
            f"SELECT id FROM system_users WHERE active = {true} "
            f"AND id IN ({', '.join([marker] * len(chunk))})"
        )
        params = list(chunk)
        if tenant_id is not None:
            sql += f" AND tenant_id = {marker}"
            params.append(tenant_id)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()

    def get_users(self, user_ids: Sequence[str]) -> dict[str, dict]:
        """id -> row (tenant_id, name, email, active, attributes) for the ids that exist."""
        t = system_users.c
        unique = list(dict.fromkeys(u for u in user_ids if isinstance(u, str)))
        users: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(unique, self.chunk_size):
                rows = conn.execute(
                    sa.select(*[getattr(t, c) for c in _USER_COLUMNS]).where(t.id.in_(chunk))
                )
                users.update({row.id: dict(row._mapping) for row in rows})
        return users

    def find_users(self, filters: Mapping[str, Any], limit: int | None = None) -> list[dict]:
        """Users matching every filter, by id. A filter on a column (tenant_id, active, name,
        email, id) is applied in SQL, a list value meaning "any of"; any other key matches
        the user's ``attributes``."""
        t = system_users.c
        query = sa.select(*[getattr(t, c) for c in _USER_COLUMNS]).order_by(t.id)
        attribute_filters: dict[str, Any] = {}
        for name, value in filters.items():
            if name in _USER_COLUMNS and name != "attributes":
                column = getattr(t, name)
                query = query.where(
                    column.in_(value) if isinstance(value, list | tuple | set) else column == value
                )
            else:
                attribute_filters[name] = value
        if limit is not None and limit < 0:
            raise ConfigurationError(f"find_users: limit must be >= 0, got {limit}")
        if limit is not None and not attribute_filters:
            query = query.limit(limit)
        found: list[dict] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if attribute_filters and not matches(row.attributes or {}, attribute_filters):
                    continue
                found.append(dict(row._mapping))
                if limit is not None and len(found) >= limit:
                    break
        return found


def matches(data: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Whether ``data`` has every filter's value (a list filter: any of its values)."""
    for name, wanted in filters.items():
        value = data.get(name)
        if isinstance(wanted, list | tuple | set):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


@dataclass(frozen=True)
class CategoryItem:
    """One item of a category, with the users it references."""

    id: str
    category: str
    data: dict
    user_ids: list[str]


@dataclass
class _Snapshot:
    items: list[CategoryItem]
    stored_at: float


def snapshot_key(category: str, filters: Mapping[str, Any] | None, limit: int | None) -> str:
    """The key of a durable category snapshot: the category, its filters (canonical JSON)
    and its limit, so different selections never serve each other's items."""
    frozen = json.dumps(filters or {}, sort_keys=True, default=str, separators=(",", ":"))
    if len(frozen) > 200:  # the context key column holds 400 characters
        frozen = "sha256:" + hashlib.sha256(frozen.encode()).hexdigest()
    return f"{category}/{frozen}/{'all' if limit is None else limit}"


@dataclass
class CategoryRepository:
    """Category items from the store, cached for ``ttl_seconds`` per (category, filters,
    limit), with the last good snapshot served when the source fails.

    With ``durable_snapshots`` every good answer is also kept in the store's ``contexts``
    table (kind ``category_snapshot``, key ``snapshot_key``), so the fallback survives the
    repository: a run (another object, another process) whose read fails serves the last
    good snapshot an earlier run saw.

    ``fallbacks`` counts answers served from a stale snapshot because the source failed
    and ``last_error`` says why, for run metadata.
    """

    engine: sa.Engine
    ttl_seconds: float = 300
    clock: Callable[[], float] = time.monotonic
    durable_snapshots: bool = False
    fallbacks: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)
    _cache: dict[tuple[Any, ...], _Snapshot] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ttl_seconds < 0:
            raise ConfigurationError(
                f"category cache ttl_seconds must not be negative, got {self.ttl_seconds}"
            )

    def items(
        self, category: str, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[CategoryItem]:
        """Items of ``category`` whose data match ``filters`` (see ``matches``; the key
        ``tenant_id`` matches the item's tenant), in the category's order, at most ``limit``."""
        if limit is not None and limit < 0:
            raise ConfigurationError(f"category {category!r}: limit must be >= 0, got {limit}")
        key = (category, _freeze(filters or {}), limit)
        now = self.clock()
        snapshot = self._cache.get(key)
        if snapshot is not None and now - snapshot.stored_at < self.ttl_seconds:
            return list(snapshot.items)
        try:
            found = self._load(category, dict(filters or {}), limit)
        except sa.exc.SQLAlchemyError as exc:
            self.last_error = f"{type(exc).__name__}"
            last_good = (
                snapshot.items
                if snapshot is not None
                else self._stored_snapshot(category, filters, limit)
            )
            if last_good is None:
                raise CategorySourceUnavailable(
                    f"category {category!r} could not be read ({type(exc).__name__}) and no earlier snapshot exists"
                ) from exc
            self.fallbacks += 1
            logger.warning(
                "category %r unavailable (%s): serving the last good snapshot",
                category,
                type(exc).__name__,
            )
            return list(last_good)
        self._cache[key] = _Snapshot(found, now)
        # Kept again only when the items changed since this repository last kept them: a
        # cache refresh that finds the same items writes nothing.
        if self.durable_snapshots and (snapshot is None or snapshot.items != found):
            self._store_snapshot(category, filters, limit, found)
        return list(found)

    def _store_snapshot(
        self,
        category: str,
        filters: Mapping[str, Any] | None,
        limit: int | None,
        items: list[CategoryItem],
    ) -> None:
        data = {
            "category": category,
            "filters": dict(filters or {}),
            "limit": limit,
            "items": [
                {"id": i.id, "category": i.category, "data": i.data, "user_ids": i.user_ids}
                for i in items
            ],
        }
        try:
            ContextStore(self.engine).put(
                CATEGORY_SNAPSHOT, snapshot_key(category, filters, limit), data
            )
        except (
            sa.exc.SQLAlchemyError
        ) as exc:  # a snapshot that cannot be kept must not fail the read
            logger.warning(
                "category %r: the snapshot could not be kept (%s)", category, type(exc).__name__
            )

    def _stored_snapshot(
        self, category: str, filters: Mapping[str, Any] | None, limit: int | None
    ) -> list[CategoryItem] | None:
        if not self.durable_snapshots:
            return None
        try:
            data = ContextStore(self.engine).get(
                CATEGORY_SNAPSHOT, snapshot_key(category, filters, limit)
            )
        except sa.exc.SQLAlchemyError:
            return None
        if data is None:
            return None
        return [
            CategoryItem(str(i["id"]), str(i["category"]), dict(i["data"]), list(i["user_ids"]))
            for i in data["items"]
        ]

    def category(self, category: str) -> dict[str, Any]:
        """The category's own row (description, data); NotFound-style error when unknown.

        When the categories cannot be read, a category with a durable snapshot is taken
        to exist (``items`` then serves the snapshot); one without raises
        CategorySourceUnavailable."""
        t = categories.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(t.id, t.description, t.data).where(t.id == category)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            if self.durable_snapshots and self._has_snapshot(category):
                return {"id": category, "description": None, "data": {}}
            raise CategorySourceUnavailable(
                f"category {category!r} could not be read ({type(exc).__name__})"
            ) from exc
        if row is None:
            raise ConfigurationError(f"category {category!r} does not exist")
        return {"id": row.id, "description": row.description, "data": row.data or {}}

    def _load(
        self, category: str, filters: dict[str, Any], limit: int | None
    ) -> list[CategoryItem]:
        t = category_items.c
        query = (
            sa.select(t.id, t.category_id, t.tenant_id, t.data, t.user_ids)
            .where(t.category_id == category)
            .order_by(t.position, t.id)
        )
        tenant = filters.pop("tenant_id", None)
        if tenant is not None:
            query = query.where(
                t.tenant_id.in_(tenant)
                if isinstance(tenant, list | tuple | set)
                else t.tenant_id == tenant
            )
        if limit is not None and not filters:
            query = query.limit(limit)
        found: list[CategoryItem] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                data = row.data or {}
                if filters and not matches(data, filters):
                    continue
                found.append(
                    CategoryItem(row.id, row.category_id, dict(data), list(row.user_ids or []))
                )
                if limit is not None and len(found) >= limit:
                    break
        return found

    def _has_snapshot(self, category: str) -> bool:
        try:
            return bool(ContextStore(self.engine).find(CATEGORY_SNAPSHOT, f"{category}/", limit=1))
        except sa.exc.SQLAlchemyError:
            return False


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(_freeze(v) for v in value)
    return value


def validate_references(
    items: Sequence[CategoryItem], users: UserRepository, tenant_id: str | None = None
) -> UserValidation:
    """Validate every user the items reference, in one chunked pass (the seed's
    ``metadata.user_references`` come from its stats)."""
    return users.validate([u for item in items for u in item.user_ids], tenant_id=tenant_id)
