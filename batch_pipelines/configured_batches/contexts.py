"""Batch contexts in the seed's JSON shape, and where they are kept.

Every configured batch run leaves a context that says what was valid, what was processed
and how it went, in exactly the shape the seed's ContextManager wrote (``results`` ->
``metadata``, ``items``, ``progress``, ``validation``), so consumers of the old contexts
keep working. Beside it: one context per request, the result per user and per tenant (and
per feature type for preference batches), and a reference to the batch for each recipient.

They live in the store's shared ``contexts`` table, one row per (kind, key). Keys start
with what they are looked up by (``user_0001/...``), so the status by user, tenant or
feature type is one prefix query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from batch_pipelines.core.sequences import chunks
from batch_pipelines.store import schema as t

BATCH = "configured_batch"
REQUEST = "configured_request"
USER_RESULT = "user_result"
TENANT_RESULT = "tenant_result"
FEATURE_TYPE_RESULT = "feature_type_result"
BATCH_REFERENCE = "batch_reference"
# A card with results sent to one recipient (see delivery.py): delivered or failed.
DELIVERY = "result_delivery"
# The last good items of a category selection, served when the category source fails.
CATEGORY_SNAPSHOT = "category_snapshot"
KINDS = (
    BATCH,
    REQUEST,
    USER_RESULT,
    TENANT_RESULT,
    FEATURE_TYPE_RESULT,
    BATCH_REFERENCE,
    DELIVERY,
    CATEGORY_SNAPSHOT,
)


def progress(succeeded: int, failed: int, total: int) -> dict[str, int]:
    processed = succeeded + failed
    percentage = 100 if total == 0 else int(processed * 100 // total)
    return {
        "processed": processed,
        "succeeded": succeeded,
        "failed": failed,
        "total": total,
        "percentage": percentage,
    }


def batch_context(
    *,
    metadata: Mapping[str, Any],
    data_source_type: str,
    valid: Sequence[str],
    invalid: Sequence[str],
    succeeded: int,
    failed: int,
    total: int,
    validation: Mapping[str, int],
    category_type: str | None = None,
    user_references: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The seed's batch context. User batches list ``valid_users``/``invalid_users``;
    category batches ``valid_categories``/``invalid_categories`` and carry
    ``data_source_type``, ``category_type`` and ``user_references`` in their metadata."""
    meta = dict(metadata)
    if data_source_type == "categories":
        meta["data_source_type"] = "categories"
        meta["category_type"] = category_type
        meta["user_references"] = dict(user_references or {"total": 0, "valid": 0, "invalid": 0})
        items = {"valid_categories": list(valid), "invalid_categories": list(invalid)}
    else:
        meta["data_source_type"] = "users"
        items = {"valid_users": list(valid), "invalid_users": list(invalid)}
    return {
        "results": {
            "metadata": meta,
            "items": items,
            "progress": progress(succeeded, failed, total),
            "validation": {k: int(validation[k]) for k in ("total", "valid", "invalid")},
        }
    }


def _deep_merge(existing: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` updated with ``new``: nested objects merged key by key, anything else
    (numbers, strings, lists) taken from ``new``."""
    merged = dict(existing)
    for key, value in new.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def merge_batch_contexts(
    existing: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> dict[str, Any]:
    """The batch context after a new generation (another run of the same batch: the same
    job, tick and group), merged into the one stored, as the seed's ContextManager merges
    contexts instead of replacing them.

    - ``metadata``: merged key by key, nested objects too; the new run's values win (its
      tick, distribution, fallbacks); ``generation`` counts the runs that wrote it.
    - ``items``: ids keep what they were unless the new run says otherwise. An id the new
      run validated is valid, one it found invalid is invalid (and no longer valid); ids it
      did not look at keep the earlier generation's verdict, so a user served by an earlier
      run stays listed with their result.
    - ``progress``: the new run's, which the caller counts over every request of the batch,
      earlier generations' included (``runner.run_batch`` carries them over).
    - ``validation``: for user batches the counts of the merged lists; for category batches
      (where it counts user references) the new run's, its latest check.
    """
    new_results = new["results"]
    if not existing or "results" not in existing:
        merged = {"results": {**new_results}}
        merged["results"]["metadata"] = {**new_results["metadata"], "generation": 1}
        return merged
    old_results = existing["results"]
    metadata = _deep_merge(old_results.get("metadata", {}), new_results["metadata"])
    metadata["generation"] = int(old_results.get("metadata", {}).get("generation") or 1) + 1

    items: dict[str, list[str]] = {}
    for kind in ("users", "categories"):
        valid_key, invalid_key = f"valid_{kind}", f"invalid_{kind}"
        if valid_key not in new_results["items"] and valid_key not in old_results.get("items", {}):
            continue
        new_valid = list(new_results["items"].get(valid_key, []))
        new_invalid = list(new_results["items"].get(invalid_key, []))
        decided = set(new_valid) | set(new_invalid)
        old_items = old_results.get("items", {})
        kept_valid = [i for i in old_items.get(valid_key, []) if i not in decided]
        kept_invalid = [i for i in old_items.get(invalid_key, []) if i not in decided]
        items[valid_key] = kept_valid + new_valid
        items[invalid_key] = kept_invalid + new_invalid
    if "valid_users" in items and new_results["metadata"].get("data_source_type") != "categories":
        valid, invalid = len(items["valid_users"]), len(items["invalid_users"])
        validation = {"total": valid + invalid, "valid": valid, "invalid": invalid}
    else:
        validation = dict(new_results["validation"])
    return {
        "results": {
            "metadata": metadata,
            "items": items,
            "progress": dict(new_results["progress"]),
            "validation": validation,
        }
    }


@dataclass(frozen=True)
class ContextRecord:
    kind: str
    key: str
    data: dict[str, Any]
    batch_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class ContextWrite:
    kind: str
    key: str
    data: dict[str, Any]
    batch_id: int | None = None


class ContextStore:
    """Reads and writes this family's contexts (SQLAlchemy Core on the store's engine)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def put_many(self, writes: Iterable[ContextWrite]) -> int:
        """Create or replace contexts, all in one transaction (a batch's contexts are
        written together or not at all)."""
        writes = list(writes)
        if not writes:
            return 0
        c = t.contexts
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            existing = set()
            for kind in {w.kind for w in writes}:
                keys = [w.key for w in writes if w.kind == kind]
                for chunk in chunks(keys, 500):
                    rows = conn.execute(
                        sa.select(c.c.key).where(c.c.kind == kind, c.c.key.in_(chunk))
                    )
                    existing.update((kind, r.key) for r in rows)
            inserts = [
                {
                    "kind": w.kind,
                    "key": w.key,
                    "data": w.data,
                    "batch_id": w.batch_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for w in writes
                if (w.kind, w.key) not in existing
            ]
            if inserts:
                conn.execute(c.insert(), inserts)
            for w in writes:
                if (w.kind, w.key) in existing:
                    conn.execute(
                        c.update()
                        .where(c.c.kind == w.kind, c.c.key == w.key)
                        .values(data=w.data, batch_id=w.batch_id, updated_at=now)
                    )
        return len(writes)

    def put(self, kind: str, key: str, data: dict[str, Any], batch_id: int | None = None) -> None:
        self.put_many([ContextWrite(kind, key, data, batch_id)])

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        c = t.contexts
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c.c.data).where(c.c.kind == kind, c.c.key == key)).first()
        return None if row is None else row.data

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The contexts of ``kind`` among ``keys`` that exist, by key (chunked queries)."""
        c = t.contexts
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(dict.fromkeys(keys)), 500):
                rows = conn.execute(
                    sa.select(c.c.key, c.c.data).where(c.c.kind == kind, c.c.key.in_(chunk))
                )
                found.update((r.key, r.data) for r in rows)
        return found

    def find(
        self, kind: str, key_prefix: str = "", limit: int | None = None
    ) -> list[ContextRecord]:
        """Contexts of ``kind`` whose key starts with ``key_prefix`` (literally: ``_`` and
        ``%`` in ids are not wildcards), newest first."""
        c = t.contexts
        q = sa.select(c.c.kind, c.c.key, c.c.data, c.c.batch_id, c.c.updated_at).where(
            c.c.kind == kind
        )
        if key_prefix:
            q = q.where(c.c.key.startswith(key_prefix, autoescape=True))
        q = q.order_by(c.c.updated_at.desc(), c.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [
                ContextRecord(r.kind, r.key, r.data, r.batch_id, r.updated_at)
                for r in conn.execute(q)
            ]

    # ------------------------------------------------------------------ status views

    def status_by_user(self, user_id: str, limit: int | None = 50) -> list[dict[str, Any]]:
        return [r.data for r in self.find(USER_RESULT, f"{user_id}/", limit)]

    def status_by_tenant(self, tenant_id: str, limit: int | None = 50) -> list[dict[str, Any]]:
        return [r.data for r in self.find(TENANT_RESULT, f"{tenant_id}/", limit)]

    def status_by_feature_type(
        self, feature_type: str, limit: int | None = 50
    ) -> list[dict[str, Any]]:
        return [r.data for r in self.find(FEATURE_TYPE_RESULT, f"{feature_type}/", limit)]

    def batch_references(self, user_id: str, limit: int | None = 50) -> list[dict[str, Any]]:
        return [r.data for r in self.find(BATCH_REFERENCE, f"{user_id}/", limit)]
