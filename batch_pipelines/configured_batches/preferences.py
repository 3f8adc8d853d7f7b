"""User preferences: when and how each user wants a feature, and where they are read from.

Preference batches run each user at the time they chose (frequency, day, time, timezone)
with their template overrides applied. The preferences live in a config database: by
default the store's ``user_preferences`` table, in production possibly a config service
reached over HTTP (``CONFIG_SERVICE_URL``). ``ConfigDatabaseClient`` hides which one, caches
what it read for ``CONFIG_CACHE_TTL`` seconds, and when the source is down serves the last
good answer or, for a user it has never seen, the job's ``default_preferences``, so a batch
keeps running through a config outage.

Changes are read incrementally by ``changed_since(cursor)`` (keyset on ``updated_at`` and the
row id, so rows written in the same instant are neither skipped nor read twice); a deleted
preference stays as a tombstone so that the reader sees the deletion.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines.core.errors import hide_secrets as redact
from batch_pipelines.core.sequences import chunks
from batch_pipelines.store.configured_batches_tables import user_preferences

logger = logging.getLogger("batch_pipelines.configured_batches")

Frequency = Literal["hourly", "daily", "weekly", "biweekly", "monthly"]
FREQUENCIES: tuple[str, ...] = ("hourly", "daily", "weekly", "biweekly", "monthly")
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
# Days of the month a monthly preference may name: every month has them, so a monthly group
# never silently skips a month.
MONTH_DAYS = range(1, 29)
# Separates the parts of a preference group's partition key, so it may not appear in them.
KEY_SEPARATOR = "|"
DEFAULT_CACHE_TTL_SECONDS = 300.0


class PreferenceSourceUnavailable(BatchPipelinesError):
    """The config database or config service could not be read."""

    code = "BP-CONFIG-SOURCE-UNAVAILABLE"


@lru_cache(maxsize=1024)
def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (cached: every user and tick asks for one)."""
    return ZoneInfo(name)


def _weekday(value: str) -> str:
    text = value.strip().lower()
    for day in WEEKDAYS:
        if text in (day, day[:3]):
            return day
    raise ValueError(f"preferred_day {value!r} is not a weekday (monday..sunday)")


class Preference(BaseModel):
    """One user's preference for one feature type.

    Normalised on construction so that equal choices compare equal and group together:
    weekdays become lower-case full names, a monthly day a number 1..28 as text, and the
    day is dropped for hourly and daily frequencies (where it means nothing).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: str
    user_id: str
    feature_type: str
    frequency: Frequency = "daily"
    preferred_day: str | None = None
    preferred_time: str = "09:00"
    timezone: str = "UTC"
    template_overrides: dict[str, Any] = {}
    enabled: bool = True
    deleted: bool = False
    updated_at: datetime | None = None

    @field_validator("tenant_id", "user_id", "feature_type")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if KEY_SEPARATOR in value:
            raise ValueError(f"must not contain {KEY_SEPARATOR!r}")
        return value

    @field_validator("frequency", mode="before")
    @classmethod
    def _lower_frequency(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("preferred_time")
    @classmethod
    def _time(cls, value: str) -> str:
        parts = value.strip().split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"preferred_time {value!r} is not HH:MM")
        hour, minute = int(parts[0]), int(parts[1])
        if not (0 <= hour <= 23 and 0 <= minute <= 59):
            raise ValueError(f"preferred_time {value!r} is not a time of day")
        return f"{hour:02d}:{minute:02d}"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        value = value.strip()
        try:
            time_zone(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {value!r} is not an IANA timezone") from None
        return value

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("updated_at must carry a timezone")
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _day(self) -> Preference:
        day = self.preferred_day
        if self.frequency in ("hourly", "daily"):
            normalised = None
        elif self.frequency in ("weekly", "biweekly"):
            if day is None or not str(day).strip():
                raise ValueError(f"preferred_day is required for a {self.frequency} preference")
            normalised = _weekday(str(day))
        else:  # monthly
            text = str(day).strip() if day is not None else ""
            if not text.isdigit() or int(text) not in MONTH_DAYS:
                raise ValueError(
                    f"preferred_day {day!r} must be a day of the month 1..28 for a monthly preference"
                )
            normalised = str(int(text))
        if normalised != day:
            object.__setattr__(self, "preferred_day", normalised)
        return self

    @property
    def active(self) -> bool:
        """Whether the user is scheduled at all (enabled and not deleted)."""
        return self.enabled and not self.deleted

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Preference:
        """Validate ``data``; a bad value raises ConfigurationError naming ``where`` (a file
        and row, a service response index) and every bad field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'preference'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigurationError(f"{where}: invalid preference: {problems}") from None

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form (what the config service sends and the membership table keeps)."""
        return self.model_dump(mode="json")


def preference_with_defaults(
    user_id: str,
    feature_type: str,
    defaults: Mapping[str, Any] | None,
    *,
    tenant_id: str = "default",
) -> Preference:
    """The preference a user gets when theirs cannot be read: the job's ``default_preferences``."""
    data = {k: v for k, v in (defaults or {}).items() if k not in ("user_id", "feature_type")}
    data.setdefault("tenant_id", tenant_id)
    return Preference.parse(
        {**data, "user_id": user_id, "feature_type": feature_type}, where="default_preferences"
    )


# --------------------------------------------------------------------------- sources


class PreferenceSource(Protocol):
    """Where preferences come from: the store or the config service."""

    def for_feature(self, feature_type: str) -> list[Preference]: ...

    def get(self, user_id: str, feature_type: str) -> Preference | None: ...

    def changed_since(
        self, cursor: str | None, limit: int | None, until: datetime | None = None
    ) -> tuple[list[Preference], str]: ...


_COLUMNS = (
    "tenant_id",
    "user_id",
    "feature_type",
    "frequency",
    "preferred_day",
    "preferred_time",
    "timezone",
    "template_overrides",
    "enabled",
    "deleted",
    "updated_at",
)


def _from_row(row: Any) -> Preference:
    # Rows were validated on the way in: model_construct skips re-validating them, which is
    # most of the cost of reading a hundred thousand preferences.
    return Preference.model_construct(**{name: getattr(row, name) for name in _COLUMNS})


def encode_cursor(updated_at: datetime, row_id: int) -> str:
    return f"{updated_at.astimezone(UTC).isoformat()}#{row_id}"


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        stamp, _, row_id = cursor.rpartition("#")
        return datetime.fromisoformat(stamp).astimezone(UTC), int(row_id)
    except ValueError:
        raise ConfigurationError(
            f"preference cursor {cursor!r} is not <iso time>#<row id>"
        ) from None


class PreferenceStore:
    """The ``user_preferences`` table: the config database of the embedded default.

    Writes validate every preference before touching the table and go in one transaction,
    so a bad row in a list stores nothing.
    """

    def __init__(
        self, engine: sa.Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ):
        self.engine = engine
        self._clock = clock

    def upsert(
        self, preferences: Iterable[Preference | Mapping[str, Any]], *, where: str = "preferences"
    ) -> int:
        """Insert or replace preferences (by user and feature type); ``updated_at`` is set
        to now so the change sensor sees them. Returns how many were written."""
        parsed = [
            p if isinstance(p, Preference) else Preference.parse(p, where=f"{where}[{i}]")
            for i, p in enumerate(preferences)
        ]
        if not parsed:
            return 0
        now = self._clock()
        rows = {
            (p.user_id, p.feature_type): {
                **{name: getattr(p, name) for name in _COLUMNS},
                "updated_at": now,
            }
            for p in parsed
        }
        with self.engine.begin() as conn:
            existing = self._existing_ids(conn, list(rows))
            inserts = [r for key, r in rows.items() if key not in existing]
            updates = [{**r, "row_id": existing[key]} for key, r in rows.items() if key in existing]
            if inserts:
                conn.execute(user_preferences.insert(), inserts)
            if updates:
                conn.execute(
                    user_preferences.update()
                    .where(user_preferences.c.id == sa.bindparam("row_id"))
                    .values(
                        {
                            name: sa.bindparam(name)
                            for name in _COLUMNS
                            if name not in ("user_id", "feature_type")
                        }
                    ),
                    updates,
                )
        return len(rows)

    def delete(self, user_id: str, feature_type: str) -> bool:
        """Delete a preference, leaving a tombstone the change sensor reads. False when
        there was none."""
        with self.engine.begin() as conn:
            result = conn.execute(
                user_preferences.update()
                .where(
                    user_preferences.c.user_id == user_id,
                    user_preferences.c.feature_type == feature_type,
                    user_preferences.c.deleted.is_(False),
                )
                .values(deleted=True, enabled=False, updated_at=self._clock())
            )
        return result.rowcount > 0

    def _existing_ids(
        self, conn: sa.Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        by_feature: dict[str, list[str]] = {}
        for user_id, feature_type in keys:
            by_feature.setdefault(feature_type, []).append(user_id)
        t = user_preferences.c
        for feature_type, users in by_feature.items():
            for chunk in chunks(users, 1000):
                rows = conn.execute(
                    sa.select(t.id, t.user_id).where(
                        t.feature_type == feature_type, t.user_id.in_(chunk)
                    )
                )
                found.update({(row.user_id, feature_type): row.id for row in rows})
        return found

    # -- reads (PreferenceSource) ------------------------------------------------------

    def for_feature(self, feature_type: str) -> list[Preference]:
        t = user_preferences.c
        query = (
            sa.select(*[getattr(t, name) for name in _COLUMNS])
            .where(t.feature_type == feature_type, t.deleted.is_(False))
            .order_by(t.user_id)
        )
        with self.engine.connect() as conn:
            return [_from_row(row) for row in conn.execute(query)]

    def get(self, user_id: str, feature_type: str) -> Preference | None:
        t = user_preferences.c
        query = sa.select(*[getattr(t, name) for name in _COLUMNS]).where(
            t.user_id == user_id, t.feature_type == feature_type, t.deleted.is_(False)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _from_row(row) if row is not None else None

    def changed_since(
        self, cursor: str | None, limit: int | None = None, until: datetime | None = None
    ) -> tuple[list[Preference], str]:
        """Preferences written after ``cursor`` (tombstones included) and, when given, not
        after ``until``, oldest first, and the cursor after the last one returned
        (``cursor`` itself when nothing changed).

        ``until`` a few seconds in the past lets writes that were stamped earlier but
        committed later (concurrent writers) land before the cursor passes their stamp."""
        t = user_preferences.c
        query = sa.select(t.id, *[getattr(t, name) for name in _COLUMNS]).order_by(
            t.updated_at, t.id
        )
        if until is not None:
            query = query.where(t.updated_at <= until)
        position = decode_cursor(cursor)
        if position is not None:
            stamp, row_id = position
            query = query.where(
                sa.or_(t.updated_at > stamp, sa.and_(t.updated_at == stamp, t.id > row_id))
            )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return [], cursor or ""
        last = rows[-1]
        return [_from_row(row) for row in rows], encode_cursor(last.updated_at, last.id)


class ServicePreferenceSource:
    """Preferences from the config service over HTTP (``clients.config_service``).

    The client is async (it shares the project's retrying HTTP base); sensors and assets
    call this synchronously, so each call runs the coroutine on a private loop, in a
    worker thread when the caller is already inside an event loop.
    """

    def __init__(self, client: Any):
        self.client = client

    def for_feature(self, feature_type: str) -> list[Preference]:
        records = _run(lambda: self.client.preferences(feature_type))
        return [
            Preference.parse(r, where=f"config service preferences[{i}]")
            for i, r in enumerate(records)
        ]

    def get(self, user_id: str, feature_type: str) -> Preference | None:
        record = _run(lambda: self.client.preference(user_id, feature_type))
        return (
            None
            if record is None
            else Preference.parse(record, where=f"config service preference {user_id}")
        )

    def changed_since(
        self, cursor: str | None, limit: int | None = None, until: datetime | None = None
    ) -> tuple[list[Preference], str]:
        # The service's cursor is its own commit sequence: nothing committed late is
        # skipped, so there is no need to hold back recent writes (``until``).
        records, next_cursor = _run(lambda: self.client.changes(cursor, limit=limit))
        prefs = [
            Preference.parse(r, where=f"config service changes[{i}]") for i, r in enumerate(records)
        ]
        return prefs, next_cursor or cursor or ""


T = TypeVar("T")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# --------------------------------------------------------------------------- client


@dataclass
class _Cached:
    value: Any
    stored_at: float


class ConfigDatabaseClient:
    """Reads preferences from a source with a TTL cache and fallbacks.

    - ``preferences_for`` and ``preference`` answer from the cache while it is younger than
      ``ttl_seconds``; else they ask the source.
    - When the source fails they serve the last good answer (however old), and a user never
      read before gets the job's ``defaults`` (its ``default_preferences``). ``fallbacks``
      counts both, ``last_error`` says why, for run metadata.
    - ``changed_since`` is never cached: it is how changes are noticed.
    """

    def __init__(
        self,
        source: PreferenceSource,
        *,
        ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        if ttl_seconds < 0:
            raise ConfigurationError(f"CONFIG_CACHE_TTL must not be negative, got {ttl_seconds}")
        self.source = source
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self.fallbacks = 0
        self.last_error: str | None = None

    @classmethod
    def from_store(cls, engine: sa.Engine, **kwargs: Any) -> ConfigDatabaseClient:
        return cls(PreferenceStore(engine), **kwargs)

    @classmethod
    def from_service(cls, client: Any, **kwargs: Any) -> ConfigDatabaseClient:
        return cls(ServicePreferenceSource(client), **kwargs)

    def _read(
        self, key: tuple[str, ...], fetch: Callable[[], Any], fallback: Callable[[], Any]
    ) -> Any:
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached.stored_at < self.ttl_seconds:
            return cached.value
        try:
            value = fetch()
        except (BatchPipelinesError, sa.exc.SQLAlchemyError, OSError) as exc:
            self.fallbacks += 1
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            logger.warning(
                "preferences unavailable, serving %s: %s",
                "last good answer" if cached else "defaults",
                exc,
            )
            return cached.value if cached is not None else fallback()
        self._cache[key] = _Cached(value, now)
        return value

    def preferences_for(
        self,
        feature_type: str,
        defaults: Mapping[str, Any] | None = None,
        *,
        users: Mapping[str, str] | None = None,
    ) -> list[Preference]:
        """Active preferences for ``feature_type``, read in one call to the source.

        Without ``users``: those of every user. ``defaults`` only apply to users one knows
        of, so with the source down and nothing cached the answer is empty, and
        ``fallbacks``/``last_error`` say so.

        With ``users`` (user id -> tenant id): the answer for exactly those users, in that
        order, as ``preference`` gives it one by one: a user the source has no preference
        for, or every user when the source is down with nothing cached, gets ``defaults``
        (in their tenant); a user who turned the feature off, or who has no preference when
        there are no defaults, is left out."""
        prefs = self._read(
            ("feature", feature_type), lambda: self.source.for_feature(feature_type), list
        )
        if users is None:
            return [p for p in prefs if p.active]
        known = {p.user_id: p for p in prefs}
        found: list[Preference] = []
        for user_id, tenant_id in users.items():
            pref = known.get(user_id)
            if pref is None and defaults:
                pref = preference_with_defaults(
                    user_id, feature_type, defaults, tenant_id=tenant_id
                )
            if pref is not None and pref.active:
                found.append(pref)
        return found

    def preference(
        self,
        user_id: str,
        feature_type: str,
        defaults: Mapping[str, Any] | None = None,
        *,
        tenant_id: str = "default",
    ) -> Preference | None:
        """The user's preference; the defaults when it cannot be read or the user has none
        (None when there are no defaults either, or when the user turned the feature off)."""

        def fallback() -> Preference | None:
            return (
                preference_with_defaults(user_id, feature_type, defaults, tenant_id=tenant_id)
                if defaults
                else None
            )

        pref = self._read(
            ("user", user_id, feature_type),
            lambda: self.source.get(user_id, feature_type),
            lambda: None,
        )
        if pref is None:
            return fallback()
        return pref if pref.active else None

    def changed_since(
        self, cursor: str | None, limit: int | None = None, until: datetime | None = None
    ) -> tuple[list[Preference], str]:
        """Preferences changed after ``cursor`` (deletions as inactive tombstones), up to
        ``until`` where the source needs it, and the next cursor. Raises
        PreferenceSourceUnavailable when the source is down: a change reader must retry,
        never pretend nothing changed."""
        try:
            return self.source.changed_since(cursor, limit, until)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise PreferenceSourceUnavailable(
                f"preference changes unavailable: {type(exc).__name__}"
            ) from exc
