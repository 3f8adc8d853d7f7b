"""The two batch types that talk SQL instead of REST: Data Extraction and Portfolio Mapping.

Both are synchronous (FINISHED as soon as ``submit`` returns) and idempotent, so the
engine may run a job again after a crash: extraction rewrites byte-identical files,
mapping skips sub-portfolios that already exist. Configuration values reach SQL only as
bound parameters; no value from a workbook is ever formatted into SQL text.

Data Extraction
    Runs ``sql/data_extraction_accounts.sql`` and ``sql/data_extraction_locations.sql``
    (or the cycle's own copies in ``{cycle_dir}/sql/``, when present) against
    ``ctx.source_database_url`` with ``:import_file`` and ``:date_value`` bound, and writes
    ``{cycle_dir}/{account_csv}`` and ``{cycle_dir}/{location_csv}``. Each file is written to
    a temporary file in the same folder, fsynced and renamed over the target, so a kill
    never leaves a half file for MRI Import to read. No row for the import file and month
    is a permanent error naming both.

Portfolio Mapping
    Creates the base portfolio's sub-portfolios in Data Bridge (``ctx.databridge_url``;
    the simulator's SQLite file by default) as rows of the ``portfolios`` table of the same
    EDM, in one transaction. The base portfolio's accounts are the ones MRI Import loaded:
    the cycle's extracted account and location CSVs. Which sub-portfolios, holding which
    accounts (:func:`plan_sub_portfolios`):

    - configured (``sub_portfolios`` non-empty, rule ``program``): one per name; it holds
      the accounts whose program code (``USERDEF1``) equals the sub-portfolio's segment,
      the name without the ``{base}_`` prefix (``USEQ_Clay_Homes`` -> ``Clay_Homes``),
      compared case-insensitively. A segment no account has gives an empty sub-portfolio.
    - derived (empty ``sub_portfolios``, rule ``region``): one per region of the base's
      locations, region being ``STATECODE``, or ``CNTRYCODE`` where there is no state,
      named ``{base}_{region}`` (the base part shortened to fit 40 characters), sorted by
      region; it holds the accounts with at least one location in that region.

    The statements are SQLAlchemy Core (portable to SQL Server): the sub-portfolio row
    (``accounts_count``/``locations_count`` filled and ``geocoded``/``geohaz_versions``
    copied from the base when the table has them), a row in ``sub_portfolio_links``
    (sub-portfolio -> base portfolio, rule, segment) and its members in
    ``sub_portfolio_accounts``; the two link tables are created in Data Bridge when
    missing. A sub-portfolio whose name already exists in the EDM is left as it is.
    ``store_in_data_bridge`` does not gate the mapping: every EDM is created on a Data
    Bridge server (``databridge-1``), so its tables are reachable either way; the flag is
    recorded in the request for the audit trail.

Errors: :class:`SqlJobError` (a ``JobError``: the engine marks the job ERROR) for what a
retry cannot fix; ``TransientServiceError`` for a locked or unreachable database, which the
engine retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from batch_pipelines.clients.http import TransientServiceError
from batch_pipelines.core.errors import ConfigurationError, JobError
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.handlers import SubmitOutcome, TrackOutcome
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.job_configurations import csv_file_names
from batch_pipelines.risk_modeling.sample_source import sub_portfolio_segment
from batch_pipelines.store.batch_store import JobRecord
from batch_pipelines.store.urls import normalize_database_url, redacted

SQL_DIR = Path(__file__).parent / "sql"
ACCOUNTS_SQL = "data_extraction_accounts.sql"
LOCATIONS_SQL = "data_extraction_locations.sql"
# Location columns that carry a peril prefix in MRI (EQCV1VAL, WSSITEDED, ...) when the
# extraction query returns a PERIL column.
PERIL_COLUMNS: tuple[str, ...] = ("CV1VAL", "CV2VAL", "CV3VAL", "CV4VAL", "SITEDED", "SITELIM")
PORTFOLIO_NAME_MAX = 40
PORTFOLIO_NUMBER_MAX = 20


class SqlJobError(JobError):
    """A SQL job cannot succeed as configured (no rows, missing portfolio, missing file)."""

    code = "BP-SQL-JOB"


# --------------------------------------------------------------------------- engines


def database_url(url: str | None, *, what: str) -> URL:
    """A SQLAlchemy URL for a SQL endpoint: SQLite, PostgreSQL or SQL Server (``mssql+...``)."""
    if not url or not url.strip():
        raise ConfigurationError(f"{what}: no database URL configured")
    raw = url.strip()
    if raw.startswith("mssql"):
        try:
            return make_url(raw)
        except Exception as exc:  # ArgumentError echoes the URL, which may hold a password
            raise ConfigurationError(f"{what}: not a database URL ({type(exc).__name__})") from None
    return normalize_database_url(raw, what=what)


def _make_engine(url: URL, *, immediate: bool) -> sa.Engine:
    if not url.drivername.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    # NullPool: no connection kept open on someone else's file (the simulator's) between jobs.
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
    if immediate:
        # Take the write lock when the transaction starts, not at its first write: a read
        # that later upgrades to a write fails at once (SQLITE_BUSY) when another process
        # wrote meanwhile, whereas BEGIN IMMEDIATE waits for the busy timeout.
        @sa.event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _require_sqlite_file(url: URL, what: str) -> None:
    """Connecting to a missing SQLite file would create an empty one: refuse instead."""
    database = url.database if url.drivername.startswith("sqlite") else None
    if (
        database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise SqlJobError(f"{what} not found: {url.database}")


_TRANSIENT_WORDS = (
    "locked",
    "busy",
    "timeout",
    "timed out",
    "connect",
    "communication",
    "deadlock",
)


def _database_error(exc: sa.exc.DBAPIError, what: str) -> Exception:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
    if exc.connection_invalidated or any(word in text.lower() for word in _TRANSIENT_WORDS):
        return TransientServiceError(f"{what}: {text}", service=what)
    return SqlJobError(f"{what}: {type(exc.orig or exc).__name__}: {text}")


class _Engines:
    """One engine per URL for the lifetime of a handler, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[tuple[str, bool], sa.Engine] = {}

    def get(self, url: URL, *, immediate: bool) -> sa.Engine:
        key = (url.render_as_string(hide_password=False), immediate)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = _make_engine(url, immediate=immediate)
            return engine

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


# --------------------------------------------------------------------------- files


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def write_csv_atomically(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write ``path`` through a temporary file in its folder and ``os.replace``; return rows.

    Readers see the old file or the complete new one, never a part; a failure (or a kill)
    leaves the old file untouched and, except for a kill, no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            # mkstemp makes the file private (0600); the CSVs are ordinary shared data files.
            os.fchmod(
                handle.fileno(), stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
            )
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([_cell(value) for value in row])
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return count


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- Data Extraction


def _extraction_sql(ctx: HandlerContext, name: str) -> str:
    override = ctx.cycle_dir / "sql" / name
    return (override if override.is_file() else SQL_DIR / name).read_text(encoding="utf-8")


def _pivot_perils(
    columns: list[str], rows: list[Sequence[Any]]
) -> tuple[list[str], list[list[Any]]]:
    """Replace PERIL + CV1VAL.. by EQCV1VAL.., WSCV1VAL.. for the perils present."""
    upper = [c.upper() for c in columns]
    if "PERIL" not in upper:
        return columns, [list(r) for r in rows]
    peril_at = upper.index("PERIL")
    generic = [i for i, c in enumerate(upper) if c in PERIL_COLUMNS]
    plain = [i for i in range(len(columns)) if i != peril_at and i not in generic]
    perils = sorted({str(r[peril_at]).strip().upper() for r in rows if r[peril_at]})
    header = [columns[i] for i in plain] + [f"{p}{upper[i]}" for p in perils for i in generic]
    out = []
    for r in rows:
        peril = str(r[peril_at] or "").strip().upper()
        out.append(
            [r[i] for i in plain] + [r[i] if p == peril else None for p in perils for i in generic]
        )
    return header, out


@dataclass(frozen=True)
class _Extracted:
    columns: list[str]
    rows: list[Sequence[Any]]


class _SqlHandler:
    """Shared shape of the two SQL batch types: synchronous, nothing to track or cancel,
    blocking database work run in a worker thread."""

    execution: Literal["sync", "async"] = "sync"

    def __init__(self, ctx: HandlerContext):
        self.ctx = ctx
        self._engines = _Engines()

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]:
        return {}

    async def cancel(self, job: JobRecord) -> None:
        return None

    def close(self) -> None:
        self._engines.dispose()


class DataExtractionHandler(_SqlHandler):
    """Data Extraction: two parameterized SELECTs, two atomically written CSVs."""

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        return await asyncio.to_thread(self.extract, job.configuration)

    def extract(self, cfg: Mapping[str, Any]) -> SubmitOutcome:
        """Blocking body of ``submit``: query, write both files, report counts."""
        import_file = str(cfg["import_file"])
        date_value = str(cfg["date_value"])
        default_account, default_location = csv_file_names(date_value, import_file)
        # Checked before anything is read: the names come from the workbook or an override.
        account_path = self.ctx.cycle_file(str(cfg.get("account_csv") or default_account))
        location_path = self.ctx.cycle_file(str(cfg.get("location_csv") or default_location))
        url = database_url(self.ctx.source_database_url, what="source database")
        _require_sqlite_file(url, "source database")
        params = {"import_file": import_file, "date_value": date_value}
        accounts_sql = _extraction_sql(self.ctx, ACCOUNTS_SQL)
        locations_sql = _extraction_sql(self.ctx, LOCATIONS_SQL)
        engine = self._engines.get(url, immediate=False)
        try:
            with engine.connect() as conn:
                accounts = self._select(conn, accounts_sql, params)
                locations = self._select(conn, locations_sql, params)
        except sa.exc.DBAPIError as exc:
            raise _database_error(exc, "source database") from None
        where = f"import file {import_file!r} (date {date_value})"
        if not accounts.rows:
            raise SqlJobError(f"no accounts for {where} in the source database", details=params)
        if not locations.rows:
            raise SqlJobError(f"no locations for {where} in the source database", details=params)
        location_columns, location_rows = _pivot_perils(locations.columns, locations.rows)
        n_accounts = write_csv_atomically(account_path, accounts.columns, accounts.rows)
        n_locations = write_csv_atomically(location_path, location_columns, location_rows)
        return SubmitOutcome(
            status=JobStatus.FINISHED,
            request={**params, "source": redacted(url)},
            response={
                "accounts": n_accounts,
                "locations": n_locations,
                "account_csv": str(account_path),
                "location_csv": str(location_path),
            },
        )

    @staticmethod
    def _select(conn: sa.Connection, sql: str, params: Mapping[str, Any]) -> _Extracted:
        result = conn.execute(sa.text(sql), dict(params))
        return _Extracted(columns=list(result.keys()), rows=[tuple(r) for r in result])


# --------------------------------------------------------------------------- Portfolio Mapping

_link_metadata = sa.MetaData()
sub_portfolio_links = sa.Table(
    "sub_portfolio_links",
    _link_metadata,
    sa.Column("datasource", sa.String(128), primary_key=True),
    sa.Column("portfolio_name", sa.String(PORTFOLIO_NAME_MAX), primary_key=True),
    sa.Column("portfolio_id", sa.Integer, nullable=False),
    sa.Column("base_portfolio_id", sa.Integer, nullable=False),
    sa.Column("base_portfolio_name", sa.String(PORTFOLIO_NAME_MAX), nullable=False),
    sa.Column("rule", sa.String(20), nullable=False),
    sa.Column("segment", sa.String(PORTFOLIO_NAME_MAX), nullable=False),
    sa.Column("accounts", sa.Integer, nullable=False),
    sa.Column("locations", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
sub_portfolio_accounts = sa.Table(
    "sub_portfolio_accounts",
    _link_metadata,
    sa.Column("portfolio_id", sa.Integer, primary_key=True),
    sa.Column("account_number", sa.String(40), primary_key=True),
    sa.Column("datasource", sa.String(128), nullable=False),
)


@dataclass(frozen=True)
class SubPortfolioPlan:
    """One sub-portfolio to create: its name, why it exists and the accounts it holds."""

    name: str
    rule: Literal["program", "region"]
    segment: str
    accounts: tuple[str, ...]
    locations: int


def _region(location: Mapping[str, str]) -> str:
    state = (location.get("STATECODE") or "").strip().upper()
    return state or (location.get("CNTRYCODE") or "").strip().upper() or "UNKNOWN"


def plan_sub_portfolios(
    job_configuration: Mapping[str, Any],
    accounts: Iterable[Mapping[str, str]],
    locations: Iterable[Mapping[str, str]],
) -> list[SubPortfolioPlan]:
    """The sub-portfolios of a Portfolio Mapping job (see the module docstring for the rule).

    ``accounts`` and ``locations`` are rows of the extracted MRI CSVs (``ACCNTNUM``,
    ``USERDEF1``; ``ACCNTNUM``, ``STATECODE``, ``CNTRYCODE``). Pure and deterministic.
    """
    base = str(job_configuration["portfolio_name"])
    accounts = list(accounts)
    locations = list(locations)
    locations_of: dict[str, list[Mapping[str, str]]] = {}
    for location in locations:
        locations_of.setdefault(location.get("ACCNTNUM", ""), []).append(location)
    configured = [str(s) for s in job_configuration.get("sub_portfolios") or []]
    plans: list[SubPortfolioPlan] = []
    if configured:
        for name in dict.fromkeys(configured):
            segment = sub_portfolio_segment(base, name)
            members = sorted(
                {
                    a["ACCNTNUM"]
                    for a in accounts
                    if (a.get("USERDEF1") or "").strip().casefold() == segment.casefold()
                }
            )
            plans.append(
                SubPortfolioPlan(
                    name=name,
                    rule="program",
                    segment=segment,
                    accounts=tuple(members),
                    locations=sum(len(locations_of.get(m, ())) for m in members),
                )
            )
        return plans
    by_region: dict[str, list[Mapping[str, str]]] = {}
    for location in locations:
        by_region.setdefault(_region(location), []).append(location)
    for region in sorted(by_region):
        members = sorted({loc.get("ACCNTNUM", "") for loc in by_region[region]})
        stem = base[: PORTFOLIO_NAME_MAX - len(region) - 1]
        plans.append(
            SubPortfolioPlan(
                name=f"{stem}_{region}",
                rule="region",
                segment=region,
                accounts=tuple(members),
                locations=len(by_region[region]),
            )
        )
    return plans


class PortfolioMappingHandler(_SqlHandler):
    """Portfolio Mapping: the base portfolio's sub-portfolios, in one Data Bridge transaction."""

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        return await asyncio.to_thread(self.map, job.configuration)

    def plan(self, cfg: Mapping[str, Any]) -> list[SubPortfolioPlan]:
        """The sub-portfolios this job creates, from the cycle's extracted CSVs."""
        import_file = str(cfg["import_file"])
        date_value = str(cfg["date_value"])
        default_account, default_location = csv_file_names(date_value, import_file)
        account_path = self.ctx.cycle_file(str(cfg.get("account_csv") or default_account))
        location_path = self.ctx.cycle_file(str(cfg.get("location_csv") or default_location))
        for path in (account_path, location_path):
            if not path.is_file():
                raise SqlJobError(
                    f"{path.name} not found in {path.parent}: the base portfolio's accounts come "
                    "from Data Extraction's files; run Data Extraction for this cycle first"
                )
        return plan_sub_portfolios(cfg, _read_csv(account_path), _read_csv(location_path))

    def map(self, cfg: Mapping[str, Any]) -> SubmitOutcome:
        """Blocking body of ``submit``."""
        edm = str(cfg["edm_name"])
        base = str(cfg["portfolio_name"])
        plans = self.plan(cfg)
        for plan in plans:
            if len(plan.name) > PORTFOLIO_NAME_MAX:
                raise SqlJobError(
                    f"sub-portfolio name {plan.name!r} exceeds {PORTFOLIO_NAME_MAX} characters"
                )
        url = database_url(self.ctx.databridge_url, what="Data Bridge")
        _require_sqlite_file(url, "Data Bridge database")
        engine = self._engines.get(url, immediate=True)
        try:
            with engine.begin() as conn:
                created, existing, base_id = _apply_mapping(conn, edm, base, plans)
        except sa.exc.DBAPIError as exc:
            raise _database_error(exc, "Data Bridge") from None
        rule = plans[0].rule if plans else ("program" if cfg.get("sub_portfolios") else "region")
        return SubmitOutcome(
            status=JobStatus.FINISHED,
            request={
                "edm_name": edm,
                "base_portfolio": base,
                "rule": rule,
                "sub_portfolios": [p.name for p in plans],
                "store_in_data_bridge": cfg.get("store_in_data_bridge"),
                "databridge": redacted(url),
            },
            response={
                "base_portfolio_id": base_id,
                "sub_portfolios": len(plans),
                "created": len(created),
                "existing": len(existing),
                "created_names": created,
                "existing_names": existing,
                "accounts_mapped": sum(len(p.accounts) for p in plans if p.name in set(created)),
            },
        )


def _apply_mapping(
    conn: sa.Connection, edm: str, base: str, plans: Sequence[SubPortfolioPlan]
) -> tuple[list[str], list[str], int]:
    """The mapping statements, all in the caller's transaction and all with bound values."""
    try:
        portfolios = sa.Table("portfolios", sa.MetaData(), autoload_with=conn)
    except sa.exc.NoSuchTableError:
        raise SqlJobError("Data Bridge has no portfolios table") from None
    _link_metadata.create_all(conn, checkfirst=True)
    columns = set(portfolios.c.keys())
    base_row = (
        conn.execute(
            sa.select(portfolios).where(portfolios.c.datasource == edm, portfolios.c.name == base)
        )
        .mappings()
        .first()
    )
    if base_row is None:
        raise SqlJobError(f"base portfolio {base!r} not found in EDM {edm!r} in Data Bridge")
    base_id = int(base_row["id"])
    names = [p.name for p in plans]
    existing = (
        {
            name
            for (name,) in conn.execute(
                sa.select(portfolios.c.name).where(
                    portfolios.c.datasource == edm, portfolios.c.name.in_(names)
                )
            )
        }
        if names
        else set()
    )
    inherited = {c: base_row[c] for c in ("geocoded", "geohaz_versions") if c in columns}
    now = time.time()
    created: list[str] = []
    for plan in plans:
        if plan.name in existing:
            continue
        values: dict[str, Any] = {
            "datasource": edm,
            "name": plan.name,
            "number": plan.name[:PORTFOLIO_NUMBER_MAX],
            "description": f"Sub-portfolio of {base}: {plan.rule} {plan.segment}"[:255],
            "created_at": now,
            **inherited,
        }
        if "accounts_count" in columns:
            values["accounts_count"] = len(plan.accounts)
        if "locations_count" in columns:
            values["locations_count"] = plan.locations
        portfolio_id = int(
            conn.execute(portfolios.insert().values(**values)).inserted_primary_key[0]
        )
        conn.execute(
            sub_portfolio_links.delete().where(
                sub_portfolio_links.c.datasource == edm,
                sub_portfolio_links.c.portfolio_name == plan.name,
            )
        )
        conn.execute(
            sub_portfolio_links.insert().values(
                datasource=edm,
                portfolio_name=plan.name,
                portfolio_id=portfolio_id,
                base_portfolio_id=base_id,
                base_portfolio_name=base,
                rule=plan.rule,
                segment=plan.segment,
                accounts=len(plan.accounts),
                locations=plan.locations,
                created_at=now,
            )
        )
        if plan.accounts:
            conn.execute(
                sub_portfolio_accounts.insert(),
                [
                    {"portfolio_id": portfolio_id, "account_number": number, "datasource": edm}
                    for number in plan.accounts
                ],
            )
        created.append(plan.name)
    return created, sorted(existing), base_id
