"""The store's migrations: frozen, complete, and safe to run over a database with rows.

A migration is history: it must build what the schema was when it was written, not what the
models say today, or a database at an older revision and a new one diverge without anyone
noticing. So migrations import nothing of the project and call no ``create_all``
(``test_no_migration_builds_from_todays_models``); ``upgrade head`` builds exactly today's
models (``test_migrations_match_the_schema``); and a database left at the previous head, or
any older revision, with a row in every table, upgrades to head keeping its rows
(``test_a_database_at_an_earlier_revision_upgrades_to_head_with_its_rows``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from batch_pipelines.store import database
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.schema import VERSION_TABLE, metadata
from batch_pipelines_tests.conftest import new_postgres_database

VERSIONS = Path(database.__file__).parent / "migrations" / "versions"


def _script() -> ScriptDirectory:
    cfg = database._alembic_config(connection=None)
    return ScriptDirectory.from_config(cfg)


def _revisions_before_head() -> list[str]:
    """Every revision but the head, newest first (the previous head comes first)."""
    script = _script()
    return [
        rev.revision for rev in script.walk_revisions() if rev.revision != script.get_current_head()
    ]


def _schema_diff(conn: sa.Connection) -> list:
    """What alembic's autogenerate would change to turn this database into the models:
    tables, columns (types, nullability, server defaults), indexes, unique and foreign keys."""
    opts = {
        "version_table": VERSION_TABLE,
        "compare_type": True,
        "compare_server_default": True,
        # the database may also hold Dagster's own tables: compare ours only
        "include_name": lambda name, kind, _parent: kind != "table" or name in metadata.tables,
    }
    return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def _primary_key_differences(conn: sa.Connection) -> list[str]:
    """Autogenerate does not compare primary keys; this does (columns, and the name where the
    backend keeps one)."""
    inspector = sa.inspect(conn)
    differences = []
    for table in metadata.sorted_tables:
        reflected = inspector.get_pk_constraint(table.name)
        declared = [c.name for c in table.primary_key.columns]
        if reflected["constrained_columns"] != declared:
            differences.append(f"{table.name}: {reflected['constrained_columns']} != {declared}")
        if reflected.get("name") and reflected["name"] != table.primary_key.name:
            differences.append(f"{table.name}: {reflected['name']} != {table.primary_key.name}")
    return differences


def _current_revision_of(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def _upgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(database._alembic_config(conn), revision)


@pytest.fixture
def empty_database_url(database_url) -> Iterator[str]:
    """A database of its own with nothing in it: a new SQLite file, or a new PostgreSQL
    database on the test server (the session's one already holds today's schema)."""
    if not database_url.startswith("postgresql"):
        yield database_url
        return
    with new_postgres_database(database_url, "bp_migrate") as url:
        yield url


def _value_for(column: sa.Column, dialect: str):
    """One value of the column's (reflected) type. The same value for every column of a
    type, so a foreign key always finds the row it points to."""
    type_ = column.type
    if isinstance(type_, sa.Boolean):
        return True
    if isinstance(type_, sa.Integer):
        return 1
    if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
        return Decimal("1.25000000")
    if isinstance(type_, sa.Float):
        return 0.5
    if isinstance(type_, sa.DateTime):
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        return moment.replace(tzinfo=None) if dialect == "sqlite" else moment
    if isinstance(type_, sa.JSON):
        return {"kept": [1, "two"]}
    if isinstance(type_, sa.String | sa.Text):
        return "k1"
    raise AssertionError(f"no sample value for {column.table.name}.{column.name}: {type_!r}")


def _fill_every_table(conn: sa.Connection) -> dict[str, tuple[list[str], list[tuple]]]:
    """Insert one row, with every column set, into every table of the store the database
    has at its revision; return each table's columns and rows as stored."""
    reflected = sa.MetaData()
    names = [n for n in sa.inspect(conn).get_table_names() if n in metadata.tables]
    reflected.reflect(conn, only=names)
    stored = {}
    for table in reflected.sorted_tables:
        conn.execute(
            table.insert().values({c.name: _value_for(c, conn.dialect.name) for c in table.c})
        )
        stored[table.name] = ([c.name for c in table.c], _rows(conn, table, list(table.c.keys())))
    return stored


def _rows(conn: sa.Connection, table: sa.Table, columns: list[str]) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.select(*(table.c[c] for c in columns)))]


def _read(conn: sa.Connection, before) -> dict[str, tuple[list[str], list[tuple]]]:
    """The same tables and columns as ``before``, read again (columns a later revision
    added are left out)."""
    reflected = sa.MetaData()
    reflected.reflect(conn, only=list(before))
    return {
        name: (columns, _rows(conn, reflected.tables[name], columns))
        for name, (columns, _) in before.items()
    }


def test_no_migration_builds_from_todays_models():
    """A migration that imports the models (or calls create_all) builds whatever the models
    say on the day it runs, so it is not history any more: migrations depend on alembic
    and SQLAlchemy only."""
    offences = []
    files = sorted(VERSIONS.glob("*.py"))
    assert any(f.name.startswith("0001") for f in files)
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            offences += [
                f"{path.name}:{node.lineno} imports {m}"
                for m in modules
                if m.split(".")[0] not in {"__future__", "alembic", "sqlalchemy"}
            ]
            if isinstance(node, ast.Attribute) and node.attr in {"create_all", "drop_all"}:
                offences.append(f"{path.name}:{node.lineno} calls {node.attr}")
    assert offences == []


def test_migrations_match_the_schema(database_url):
    """``upgrade head`` (what the store runs when it opens a database) builds exactly the
    tables, columns, keys and indexes the models declare: an empty autogenerate diff."""
    store = BatchStore(database_url)
    with store.engine.connect() as conn:
        diff = _schema_diff(conn)
        primary_keys = _primary_key_differences(conn)
    store.dispose()
    assert diff == []
    assert primary_keys == []


def test_the_previous_head_lacks_what_the_head_migration_adds(empty_database_url):
    """A frozen migration: a database at the previous head is not yet today's schema (a
    migration that builds today's models would already have made it so)."""
    script = _script()
    previous = script.get_revision(script.get_current_head()).down_revision
    engine = database.create_engine(empty_database_url)
    try:
        _upgrade(engine, previous)
        with engine.connect() as conn:
            assert _schema_diff(conn) != []
        _upgrade(engine, "head")
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("revision", _revisions_before_head())
def test_a_database_at_an_earlier_revision_upgrades_to_head_with_its_rows(
    empty_database_url, revision
):
    """The upgrade a deployed store goes through when new code opens it: from the previous
    head (and every older revision), with a row in every table, to head. Every row is still
    there, unchanged, and the schema is then exactly today's models."""
    engine = database.create_engine(empty_database_url)
    try:
        _upgrade(engine, revision)
        with engine.begin() as conn:
            before = _fill_every_table(conn)
        assert before and all(len(rows) == 1 for _, rows in before.values())

        database.migrate(engine)  # what BatchStore does on open

        with engine.connect() as conn:
            assert _current_revision_of(conn) == _script().get_current_head()
            assert _read(conn, before) == before
            assert _schema_diff(conn) == []
            assert _primary_key_differences(conn) == []
            # today's models read the old rows too
            for name in before:
                assert (
                    conn.execute(
                        sa.select(sa.func.count()).select_from(metadata.tables[name])
                    ).scalar_one()
                    == 1
                )
    finally:
        engine.dispose()


def test_an_sqlite_upgrade_leaves_foreign_keys_enforced(tmp_path):
    """The upgrade turns SQLite's enforcement off to copy tables; connections the store
    uses afterwards must have it back on."""
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    metadata.tables["batch_events"]
                    .insert()
                    .values(
                        batch_id=404,
                        level="INFO",
                        message="no such batch",
                        created_at=datetime.now(UTC),
                    )
                )
    finally:
        store.dispose()


def test_an_sqlite_upgrade_that_would_leave_rows_pointing_nowhere_changes_nothing(tmp_path):
    """A row whose reference is broken is found before the upgrade commits: the upgrade is
    refused with a StoreError naming the table, and the database stays at its revision
    without any table of the later ones."""
    from batch_pipelines.core.errors import StoreError

    engine = database.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        _upgrade(engine, "0001")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.execute(
                metadata.tables["batch_events"]
                .insert()
                .values(batch_id=404, level="INFO", message="orphan", created_at=datetime.now(UTC))
            )
            conn.commit()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        with pytest.raises(StoreError, match="batch_events"):
            database.migrate(engine)
        with engine.connect() as conn:
            revision = _current_revision_of(conn)
            tables = set(sa.inspect(conn).get_table_names())
        assert revision == "0001"
        assert "document_jobs" not in tables and "role_batches" not in tables
        assert not any(name.startswith("_alembic_tmp") for name in tables)
    finally:
        engine.dispose()


def test_a_drafted_migration_needs_nothing_from_the_models(tmp_path):
    """Autogenerate (how the next revision is drafted, see the README) writes timestamps as
    ``sa.DateTime(timezone=True)``, not as the models' ``UTCDateTime``, so the draft passes
    ``test_no_migration_builds_from_todays_models`` as it is."""
    import shutil

    scripts = tmp_path / "migrations"
    shutil.copytree(VERSIONS.parent, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    engine = database.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        database.migrate(engine)
        with engine.begin() as conn:
            # a database one table short of the models: the draft must create it
            conn.exec_driver_sql("DROP TABLE role_batch_tombstones")
            cfg = database._alembic_config(conn)
            cfg.set_main_option("script_location", str(scripts))
            draft = command.revision(cfg, "draft", autogenerate=True, rev_id="9999")
    finally:
        engine.dispose()
    text = Path(draft.path).read_text()
    assert "op.create_table" in text and "role_batch_tombstones" in text
    assert "sa.DateTime(timezone=True)" in text
    assert "batch_pipelines" not in text


def test_processes_opening_a_new_store_at_once_all_open_it(empty_database_url):
    """Several workers started together against a new database: one upgrades it, the others
    wait for it and find it at head (on SQLite they failed with 'table ... already exists')."""
    import subprocess
    import sys

    code = "import sys; from batch_pipelines.store.batch_store import BatchStore; BatchStore(sys.argv[1]).dispose()"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    engine = database.create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            assert _current_revision_of(conn) == _script().get_current_head()
    finally:
        engine.dispose()
