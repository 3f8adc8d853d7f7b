"""Engine creation and schema migrations for the store.

SQLite is tuned for many small durable writes from one process at a time (WAL, NORMAL
sync, a busy timeout so a second process waits instead of failing); PostgreSQL gets a pool
sized for the engine's writer plus readers.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from batch_pipelines.core.errors import StoreError
from batch_pipelines.store.schema import VERSION_TABLE
from batch_pipelines.store.urls import normalize_database_url, redacted

_MIGRATED: set[str] = set()
_MIGRATE_LOCK = threading.Lock()


def create_engine(url: str | None) -> sa.Engine:
    parsed = normalize_database_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    return sa.create_engine(
        parsed,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        # A client killed in the middle of a transaction must not leave its row locks (job
        # claims) behind for long: the server ends such a session after 30 s, and TCP
        # keepalives find a vanished client.
        connect_args={
            "options": "-c idle_in_transaction_session_timeout=30000",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


def unreachable_store(
    exc: sa.exc.DBAPIError, url: sa.URL, setting: str = "BATCH_PIPELINES_DATABASE_URL"
) -> StoreError:
    """The one-line error for a store that cannot be opened (server down, wrong user or
    password, missing database, unwritable SQLite file): it names the setting and the URL
    without its password, and keeps the driver's first line, which says what went wrong.

    The driver's full text spans lines (hints, the SQL) and SQLAlchemy adds a link; a user
    needs the reason, and a password must never show, even if a driver echoes it.
    """
    reason = " ".join(str(exc.orig).split("\n", 1)[0].split()) or type(exc.orig).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return StoreError(
        f"cannot open the store {redacted(url)} (setting {setting}): {reason}",
        details={"setting": setting},
    )


def open_engine(url: str | None, setting: str = "BATCH_PIPELINES_DATABASE_URL") -> sa.Engine:
    """``create_engine`` and ``migrate``, with a store that cannot be reached reported as a
    StoreError (see ``unreachable_store``) instead of the driver's exception."""
    try:
        engine = create_engine(url)
    except OSError as exc:  # the SQLite file's folder cannot be created
        raise StoreError(
            f"cannot open the store {redacted(normalize_database_url(url))} (setting {setting}): "
            f"{exc.strerror or type(exc).__name__}",
            details={"setting": setting},
        ) from None
    try:
        migrate(engine)
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise unreachable_store(exc, engine.url, setting) from None
    return engine


def _alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (once per process and database).

    A database already at the head is only read. Otherwise the upgrade is one transaction on
    both backends (it happens whole or not at all) that a second process opening the store
    waits for. On SQLite, a migration that changes a table (a constraint, a column type)
    copies it into a new one and drops the old (alembic's batch mode); with foreign keys
    enforced, dropping a table other rows point to fails. So the upgrade runs with
    enforcement off (SQLite ignores the switch inside a transaction, hence before it),
    checks every reference with ``PRAGMA foreign_key_check`` before it commits, and turns
    enforcement back on.
    """
    key = engine.url.render_as_string(hide_password=False)
    with _MIGRATE_LOCK:
        if key in _MIGRATED:
            return
        with engine.connect() as conn:
            head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
            at_head = _current_revision(conn) == head
            conn.rollback()
            if not at_head:
                _upgrade_to_head(conn, head)
        _MIGRATED.add(key)


def _current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def _upgrade_to_head(conn: sa.Connection, head: str) -> None:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
    try:
        with conn.begin():
            if sqlite:
                # The driver begins a transaction only before INSERT/UPDATE/DELETE, so DDL
                # would commit statement by statement: begin it here. IMMEDIATE takes the
                # write lock first, so a second process waits, then reads the new revision.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # Two processes migrating at once: the advisory lock makes one wait.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
            if _current_revision(conn) != head:
                command.upgrade(_alembic_config(conn), "head")
            if sqlite:
                _check_references(conn)
    finally:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _check_references(conn: sa.Connection) -> None:
    """Refuse (and so roll back) an SQLite upgrade that left a row pointing nowhere."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, _rowid, parent, _fk = broken[0]
        raise StoreError(
            f"the schema upgrade left {len(broken)} row(s) pointing nowhere "
            f"(first: table {table}, referring to {parent}); nothing was changed",
            details={"table": table, "parent": parent},
        )


@functools.cache
def insert_new_rows(
    dialect: str,
    table: sa.Table,
    conflict_columns: tuple[str, ...] | None = None,
    returning: str | None = None,
) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``table`` on ``dialect``, optionally
    ``RETURNING`` one column of the rows actually inserted (on both backends).

    What every idempotent write here needs (the cost ledger, phase results, tick claims):
    a row whose key is already stored stays as it was. Built once per shape and reused, so
    the statement and its cache key are not rebuilt on every checkpoint.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    inserts = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    if dialect not in inserts:
        raise NotImplementedError(f"idempotent inserts need PostgreSQL or SQLite, not {dialect}")
    stmt = inserts[dialect](table).on_conflict_do_nothing(
        index_elements=list(conflict_columns) if conflict_columns else None
    )
    return stmt.returning(table.c[returning]) if returning else stmt
