"""A stand-in for Moody's Risk Modeler (IRP) that behaves like the real one, failures included.

The engine's hard problems are all about the service's behaviour over time and under
failure: workflows that take a while, answers that get lost after the work was accepted,
retries that must not submit twice, a process that dies mid-batch. So this simulator keeps
its state in a SQLite file (it survives restarts and kills -- every acceptance is committed
before it is answered), derives workflow status from the clock (no background task to
drive, so a restarted simulator resumes exactly where the old one was), and honours
``x-rms-requestid`` with stored responses that are replayed.

Shape follows the public record of the Risk Modeler API (shared reference: external-apis.md). Adding an endpoint means writing one
handler method ``(db, call) -> Answer`` and one row in ``_route_table``; an asynchronous
endpoint calls ``_start_workflow`` with an effect, and the effect is one function in
``_EFFECTS`` applied when the workflow finishes.

Throughput matters (the benchmark runs thousands of requests per second through this app
on the client's own event loop), hence: one connection opened lazily and kept, WAL with
synchronous=NORMAL, plain parameterised statements, no ORM, and request/replay/fault
counters kept in memory and written with the next committed write instead of committing
on every GET. A kill can therefore lose the counts of requests that changed nothing; it can
never lose an acceptance, an entity or a stored response.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_pipelines.simulators.faults import Decision, FaultInjector, FaultPlan

WORKFLOWS_PATH = "/riskmodeler/v1/workflows"
KNOWN_SERVERS = frozenset({"databridge-1"})
# Data servers as listed by GET /riskmodeler/v1/dataservers; exports name the server by id.
DATA_SERVERS = ({"id": 1, "name": "databridge-1", "type": "DATABRIDGE"},)
EXPORT_JOBS_PATH = "/platform/export/v1/jobs"
UPLOADS_PATH = "/_sim/storage"
STORAGE_FILE_TYPES = frozenset({"account", "location"})
MRI_DELIMITERS = {"TAB": "\t", "COMMA": ",", "SEMICOLON": ";"}
# Reference data kinds: list path segment -> key of the ``reference_data`` argument.
REFERENCE_KINDS = {
    "model-profiles": "model_profiles",
    "output-profiles": "output_profiles",
    "event-rate-schemes": "event_rate_schemes",
}
# Data versions an EDM is created at and upgraded to (EDM_DATA_UPGRADE).
CREATED_DATA_VERSION = "21"
LATEST_DATA_VERSION = "22"
PORTFOLIO_NAME_MAX = 40
PORTFOLIO_NUMBER_MAX = 20
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "CANCELLED"})
# The inner job objects of a workflow use other words than the workflow itself; clients
# must map them (core.statuses.job_status_from_service understands all of these).
INNER_JOB_WORDS = {
    "QUEUED": "Queued",
    "PENDING": "Pending",
    "RUNNING": "InProgress",
    "FINISHED": "Succeeded",
    "FAILED": "Failed",
    "CANCEL_REQUESTED": "Cancel Requested",
    "CANCELLING": "Cancelling",
    "CANCELLED": "Cancelled",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- One row per x-rms-requestid: the first answer (replayed verbatim) and how many times the
-- key was accepted. accept_count > 1 would be a double submission; stats report it.
CREATE TABLE IF NOT EXISTS request_keys (
    request_id TEXT PRIMARY KEY,
    accept_count INTEGER NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL
) WITHOUT ROWID;
-- Durations are stored per workflow so changing the simulator's settings never rewrites
-- the history of workflows already submitted.
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    submit_at REAL NOT NULL,
    queued_s REAL NOT NULL,
    pending_s REAL NOT NULL,
    running_s REAL NOT NULL,
    finish_at REAL NOT NULL,
    failure TEXT,
    cancel_at REAL,
    effect TEXT,
    effect_pending INTEGER NOT NULL,
    summary TEXT NOT NULL,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_due ON workflows (finish_at) WHERE effect_pending = 1;
CREATE INDEX IF NOT EXISTS workflows_pending_subject ON workflows (subject) WHERE effect_pending = 1;
CREATE TABLE IF NOT EXISTS datasources (
    name TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    data_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    workflow_id INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS portfolios (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    datasource TEXT NOT NULL,
    name TEXT NOT NULL,
    number TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at REAL NOT NULL,
    accounts_count INTEGER NOT NULL DEFAULT 0,
    locations_count INTEGER NOT NULL DEFAULT 0,
    geocoded INTEGER NOT NULL DEFAULT 0,
    geohaz_versions TEXT,
    UNIQUE (datasource, name)
);
-- MRI import: a bucket holds the uploaded account/location files and the mapping file.
CREATE TABLE IF NOT EXISTS buckets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS storage_files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket_id INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    file_type TEXT NOT NULL,
    uploaded_size INTEGER,
    data_rows INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS treaties (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    datasource TEXT NOT NULL,
    name TEXT NOT NULL,
    number TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (datasource, name)
);
CREATE TABLE IF NOT EXISTS treaty_lobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    treaty_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (treaty_id, name)
);
-- Analyses and analysis groups share one id space, as in the Risk Modeler: a group's items
-- are analysis ids, and a group id can be an item of a rollup group.
CREATE TABLE IF NOT EXISTS analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    is_group INTEGER NOT NULL,
    datasource TEXT,
    portfolio_id INTEGER,
    item_ids TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    workflow_id INTEGER
);
CREATE INDEX IF NOT EXISTS analyses_name ON analyses (name);
CREATE TABLE IF NOT EXISTS rdms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    server_id INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rdm_contents (
    rdm_id INTEGER NOT NULL,
    analysis_id INTEGER NOT NULL,
    exported_at REAL NOT NULL,
    PRIMARY KEY (rdm_id, analysis_id)
) WITHOUT ROWID;
"""
# Columns added to tables of files created by older versions of the simulator.
_ADDED_COLUMNS = {
    "portfolios": (
        ("accounts_count", "INTEGER NOT NULL DEFAULT 0"),
        ("locations_count", "INTEGER NOT NULL DEFAULT 0"),
        ("geocoded", "INTEGER NOT NULL DEFAULT 0"),
        ("geohaz_versions", "TEXT"),
    ),
}
# Tables emptied by reset(); AUTOINCREMENT sequences are kept on purpose so an id a client
# still holds from before a reset can never name a different, newer object.
_STATE_TABLES = (
    "counters",
    "request_keys",
    "workflows",
    "datasources",
    "portfolios",
    "buckets",
    "storage_files",
    "treaties",
    "treaty_lobs",
    "analyses",
    "rdms",
    "rdm_contents",
)

_PF_COLUMNS = "id, datasource, name, number, description, created_at, accounts_count, locations_count, geocoded"
_WF_COLUMNS = (
    "id, type, name, subject, submit_at, queued_s, pending_s, running_s, failure, cancel_at, "
    "summary, output"
)


class ApiError(Exception):
    """Raised by a handler to answer ``{code, message, logId}``; the transaction rolls back."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Call:
    """What a handler sees of a request: no Starlette objects, so handlers stay synchronous.

    The query string is parsed on first use: most writes never look at it."""

    __slots__ = ("path", "body", "now", "raw", "_query_string", "_query")

    def __init__(
        self, path: dict[str, Any], query_string: bytes, body: Any, now: float, raw: bytes = b""
    ):
        self.path = path
        self.body = body
        self.now = now
        self.raw = raw  # the request body as sent (file uploads are not JSON)
        self._query_string = query_string
        self._query: QueryParams | None = None

    @property
    def query(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self._query_string)
        return self._query


@dataclass(slots=True)
class Answer:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body (202s carry only Location)
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[sqlite3.Connection, Call], Answer]


def workflow_status(
    submit_at: float,
    queued_s: float,
    pending_s: float,
    running_s: float,
    failure: str | None,
    cancel_at: float | None,
    now: float,
) -> str:
    """Status of a workflow at ``now``, derived only from its stored timestamps.

    A cancel goes CANCEL_REQUESTED -> CANCELLING -> CANCELLED using the workflow's own
    queued and pending durations, so cancellation takes "the next moments" in the same
    time scale as the rest of the workflow.
    """
    if cancel_at is not None:
        since = now - cancel_at
        if since < queued_s:
            return "CANCEL_REQUESTED"
        if since < queued_s + pending_s:
            return "CANCELLING"
        return "CANCELLED"
    elapsed = now - submit_at
    if elapsed < queued_s:
        return "QUEUED"
    if elapsed < queued_s + pending_s:
        return "PENDING"
    if elapsed < queued_s + pending_s + running_s:
        return "RUNNING"
    return "FAILED" if failure is not None else "FINISHED"


def _progress(
    submit_at: float, queued_s: float, pending_s: float, running_s: float, at: float
) -> int:
    ran = at - submit_at - queued_s - pending_s
    if ran <= 0:
        return 0
    if ran >= running_s:
        return 100
    return min(99, int(100 * ran / running_s))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _iso_of(ts)


@functools.lru_cache(maxsize=256)
def _iso_of(ts: float) -> str:
    # Cached: the requests answered in one turn of the event loop share one clock reading.
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_id() -> str:
    return secrets.token_hex(9)[:17]


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _json_bytes({"code": code, "message": message, "logId": _log_id()}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


_FAULT_CODES = {
    429: ("TOO_MANY_REQUESTS", "Rate limit exceeded; retry later."),
    500: ("INTERNAL_SERVER_ERROR", "Internal server error (simulated)."),
    502: ("BAD_GATEWAY", "Bad gateway (simulated)."),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable (simulated)."),
}


def _limit_offset(query: QueryParams) -> tuple[int, int]:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        offset = int(query.get("offset", 0))
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER", "limit and offset must be integers.") from None
    if limit < 0 or offset < 0:
        raise ApiError(400, "INVALID_PARAMETER", "limit and offset must not be negative.")
    return min(limit, MAX_LIMIT), offset


def _required(query: QueryParams, name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise ApiError(400, "MISSING_PARAMETER", f"The query parameter '{name}' is required.")
    return value


def _present(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The given keys of a request body that the caller actually set."""
    return {key: body[key] for key in keys if body.get(key) is not None}


class RiskModelerSimulator:
    """The Risk Modeler as an ASGI app (``.app``) over a SQLite file.

    Use in-process with ``embedded.InProcessTransport(sim.app)`` or serve it with uvicorn (see
    ``batch_pipelines.simulators.cli``). Several processes may share one file: writes use
    ``BEGIN IMMEDIATE`` and re-check the idempotency key inside the transaction, so the
    same ``x-rms-requestid`` is accepted once even across processes. The 409
    REQUEST_IN_PROGRESS answer, however, only knows about requests in this process.

    Single-threaded by design, like the event loop it runs on: call ``stats()``,
    ``reset()`` and ``close()`` from the loop's thread or while no request is in flight.
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        api_key: str = "sim-key",
        faults: FaultPlan = FaultPlan(),  # noqa: B008 -- frozen, so one shared default is safe
        workflow_seconds: tuple[float, float, float] = (0.05, 0.05, 0.1),
        clock: Callable[[], float] = time.time,
        reference_data: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.api_key = api_key
        self.faults = faults
        self.workflow_seconds = tuple(float(s) for s in workflow_seconds)
        if len(self.workflow_seconds) != 3 or min(self.workflow_seconds) < 0:
            raise ValueError("workflow_seconds must be three non-negative durations")
        # Wall-clock time, not monotonic: timestamps must mean the same after a restart.
        self._clock = clock
        self._injector = FaultInjector(faults)
        self._conn: sqlite3.Connection | None = None
        self._commit_future: asyncio.Future[None] | None = None
        self._in_flight: set[str] = set()
        self._unsaved: Counter[str] = Counter()
        # Model profiles, output profiles and event rate schemes. None: "open" reference
        # data, where every name exists with a stable id (crc32 of kind and name), so a
        # simulator needs no seeding to run any workbook; given: only those names exist.
        self._reference: dict[str, dict[str, int]] | None = None
        if reference_data is not None:
            unknown = set(reference_data) - set(REFERENCE_KINDS.values())
            if unknown:
                raise ValueError(f"unknown reference data kinds: {sorted(unknown)}")
            self._reference = {
                kind: {name: index + 1 for index, name in enumerate(reference_data.get(kind, ()))}
                for kind in REFERENCE_KINDS.values()
            }
        self.app = Starlette(
            routes=[
                Route(path, self._endpoint(handler, method), methods=[method])
                for method, path, handler in self._route_table()
            ]
            + [
                Route("/_sim/stats", self._stats_endpoint, methods=["GET"]),
                Route("/_sim/reset", self._reset_endpoint, methods=["POST"]),
            ],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    # ------------------------------------------------------------------ routes and effects

    def _route_table(self) -> list[tuple[str, str, Handler]]:
        # Hot paths first: Starlette matches routes in order.
        return [
            ("POST", "/riskmodeler/v2/portfolios", self._create_portfolio),
            ("GET", WORKFLOWS_PATH + "/{workflow_id}", self._get_workflow),
            ("GET", WORKFLOWS_PATH, self._list_workflows),
            ("DELETE", WORKFLOWS_PATH + "/{workflow_id}", self._cancel_workflow),
            ("POST", "/riskmodeler/v2/datasources", self._datasource_operation),
            ("GET", "/riskmodeler/v2/datasources", self._list_datasources),
            ("GET", "/riskmodeler/v2/datasources/{name}", self._get_datasource),
            ("GET", "/riskmodeler/v2/portfolios", self._list_portfolios),
            ("GET", "/riskmodeler/v2/portfolios/{portfolio_id}", self._get_portfolio),
            ("GET", "/riskmodeler/v1/dataservers", self._list_dataservers),
            *(
                ("GET", f"/riskmodeler/v1/{segment}", self._reference_lister(kind))
                for segment, kind in REFERENCE_KINDS.items()
            ),
            # MRI import: bucket, files, upload, mapping, import
            ("POST", "/riskmodeler/v1/storage", self._create_bucket),
            ("POST", "/riskmodeler/v1/storage/{bucket_id}/path", self._create_storage_file),
            ("PUT", UPLOADS_PATH + "/{bucket_id}/{file_id}", self._upload_file),
            ("POST", "/riskmodeler/v1/imports/createmapping/{bucket_id}", self._create_mapping),
            ("POST", "/riskmodeler/v1/imports", self._start_import),
            # treaties
            ("POST", "/riskmodeler/v1/treaties", self._create_treaty),
            ("POST", "/riskmodeler/v1/treaties/lob/batch", self._create_treaty_lobs),
            ("GET", "/riskmodeler/v1/treaties", self._list_treaties),
            # GeoHaz and analyses
            ("POST", "/riskmodeler/v2/portfolios/{portfolio_id}/geohaz", self._start_geohaz),
            ("POST", "/riskmodeler/v2/portfolios/{portfolio_id}/process", self._start_analysis),
            ("GET", "/riskmodeler/v2/analyses", self._list_analyses),
            ("GET", "/riskmodeler/v2/analyses/{analysis_id}", self._get_analysis),
            ("DELETE", "/riskmodeler/v2/analyses/{analysis_id}", self._delete_analysis),
            ("POST", "/riskmodeler/v2/analysis-groups", self._start_group),
            ("GET", "/riskmodeler/v2/analysis-groups", self._list_groups),
            ("DELETE", "/riskmodeler/v2/analysis-groups/{analysis_id}", self._delete_group),
            # exports to RDM (Platform API); the job is also a Risk Modeler workflow
            ("POST", EXPORT_JOBS_PATH, self._start_export),
            ("GET", EXPORT_JOBS_PATH + "/{workflow_id}", self._get_workflow),
        ]

    def _apply_create_datasource(
        self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO datasources (name, server, data_version, created_at, workflow_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (effect["name"], effect["server"], CREATED_DATA_VERSION, at, wf_id),
        )

    def _apply_upgrade_datasource(
        self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float
    ) -> None:
        db.execute(
            "UPDATE datasources SET data_version = ? WHERE name = ?",
            (effect["version"], effect["name"]),
        )

    def _apply_mri_import(
        self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float
    ) -> None:
        if effect.get("append", True):
            db.execute(
                "UPDATE portfolios SET accounts_count = accounts_count + ?, "
                "locations_count = locations_count + ? WHERE id = ?",
                (effect["accounts"], effect["locations"], effect["portfolio_id"]),
            )
        else:
            db.execute(
                "UPDATE portfolios SET accounts_count = ?, locations_count = ? WHERE id = ?",
                (effect["accounts"], effect["locations"], effect["portfolio_id"]),
            )

    def _apply_geohaz(self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float) -> None:
        db.execute(
            "UPDATE portfolios SET geocoded = 1, geohaz_versions = ? WHERE id = ?",
            (json.dumps(effect["versions"]), effect["portfolio_id"]),
        )

    def _apply_create_analysis(
        self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float
    ) -> None:
        db.execute(
            "INSERT INTO analyses (name, is_group, datasource, portfolio_id, item_ids, settings, "
            "created_at, workflow_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                effect["name"],
                1 if effect.get("is_group") else 0,
                effect.get("datasource"),
                effect.get("portfolio_id"),
                json.dumps(effect.get("item_ids", [])),
                json.dumps(effect.get("settings", {})),
                at,
                wf_id,
            ),
        )

    def _apply_export(self, db: sqlite3.Connection, effect: dict, wf_id: int, at: float) -> None:
        if effect.get("rdm_name"):
            db.execute(
                "INSERT OR IGNORE INTO rdms (name, server_id, created_at) VALUES (?, ?, ?)",
                (effect["rdm_name"], effect["server_id"], at),
            )
            rdm_id = db.execute(
                "SELECT id FROM rdms WHERE name = ?", (effect["rdm_name"],)
            ).fetchone()[0]
        else:
            rdm_id = effect["database_id"]
        db.executemany(
            "INSERT OR IGNORE INTO rdm_contents (rdm_id, analysis_id, exported_at) VALUES (?, ?, ?)",
            [(rdm_id, analysis_id, at) for analysis_id in effect["analysis_ids"]],
        )

    _EFFECTS: dict[str, Callable[..., None]] = {
        "create_datasource": _apply_create_datasource,
        "upgrade_datasource": _apply_upgrade_datasource,
        "mri_import": _apply_mri_import,
        "geohaz": _apply_geohaz,
        "create_analysis": _apply_create_analysis,
        "export": _apply_export,
    }

    # ------------------------------------------------------------------ public accessors

    def stats(self) -> dict[str, Any]:
        """Counters for tests and the benchmark; ``duplicate_acceptances`` must stay empty."""
        db = self._db()
        self._flush_counters(db)
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        max_per_key = db.execute("SELECT max(accept_count) FROM request_keys").fetchone()[0]
        duplicates = [
            row[0]
            for row in db.execute(
                "SELECT request_id FROM request_keys WHERE accept_count > 1 ORDER BY request_id"
            )
        ]
        now = self._clock()
        by_status: Counter[str] = Counter(
            workflow_status(*row, now)
            for row in db.execute(
                "SELECT submit_at, queued_s, pending_s, running_s, failure, cancel_at FROM workflows"
            )
        )
        return {
            "requests_total": counters.get("requests_total", 0),
            "accepted_total": counters.get("accepted_total", 0),
            "replays_total": counters.get("replays_total", 0),
            "accepted_per_request_id_max": max_per_key or 0,
            "duplicate_acceptances": duplicates,
            "faults_injected": {
                name.removeprefix("fault."): value
                for name, value in sorted(counters.items())
                if name.startswith("fault.")
            },
            "workflows_by_status": dict(sorted(by_status.items())),
            "in_flight_requests": len(self._in_flight),
        }

    def reset(self) -> None:
        """Forget all state and counters and restart the fault sequence from the seed."""
        db = self._db()
        self._commit_now()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in _STATE_TABLES:
                db.execute(f"DELETE FROM {table}")  # noqa: S608 -- fixed table names
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._unsaved.clear()
        self._injector = FaultInjector(self.faults)

    def close(self) -> None:
        """Commit what is pending and release the file (a new simulator may then open it)."""
        if self._conn is not None:
            self._commit_now()
            self._flush_counters(self._conn)
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ database

    def _db(self) -> sqlite3.Connection:
        # Opened on first use, never at construction or import: constructing a simulator
        # (e.g. inside Definitions) must not touch the disk.
        if self._conn is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Fewer, larger checkpoints: each one fsyncs, and the default (1000 pages)
            # checkpoints every couple of hundred acceptances.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            conn.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column, decl in columns:
                    if column not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            self._conn = conn
        return self._conn

    def _flush_counters(self, db: sqlite3.Connection) -> None:
        """Write counters kept in memory; inside the open transaction when there is one."""
        if not self._unsaved:
            return
        items = list(self._unsaved.items())
        self._unsaved.clear()
        db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            items,
        )

    def _begin(self, db: sqlite3.Connection) -> asyncio.Future[None]:
        """Join the open write transaction, starting it (and scheduling its commit) if needed.

        Group commit: every write made during one turn of the event loop goes into one
        transaction, committed by a callback at the start of the next turn; each accepting
        request awaits that commit before it answers. A commit costs far more than the
        statements in it (it writes every dirty page to the WAL), so at benchmark
        concurrency this halves the simulator's cost per acceptance while keeping the
        promise that nothing is answered before it is committed to the file.
        """
        loop = asyncio.get_running_loop()
        future = self._commit_future
        if future is not None and future.get_loop() is loop and db.in_transaction:
            return future
        if future is not None or db.in_transaction:
            # Left over from a loop that stopped before its commit callback ran (a test
            # that drives one simulator from several asyncio.run calls): commit it now.
            self._commit_now()
        db.execute("BEGIN IMMEDIATE")
        self._commit_future = loop.create_future()
        loop.call_soon(self._commit_now)
        return self._commit_future

    def _commit_now(self) -> None:
        """Commit the open transaction and release the requests waiting for it."""
        future, self._commit_future = self._commit_future, None
        db = self._conn
        try:
            if db is not None and db.in_transaction:
                self._flush_counters(db)
                db.execute("COMMIT")
        except Exception as exc:
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
            if future is not None and not future.done():
                future.set_exception(exc)
                return
            raise
        if future is not None and not future.done():
            future.set_result(None)

    def _apply_due_effects(self, db: sqlite3.Connection, now: float) -> None:
        """Make the effects of workflows that have FINISHED by ``now`` visible.

        Called by every handler that reads or writes entities, before it looks at them, so
        a client never sees a FINISHED workflow whose EDM does not exist yet. The common
        case (nothing due) is one indexed read and no write. Reads do not wait for the
        commit of what they apply: it is derived from workflows already committed, so a
        lost commit is simply applied again by the next read.
        """
        query = (
            "SELECT id, effect, finish_at FROM workflows "
            "WHERE effect_pending = 1 AND finish_at <= ? ORDER BY finish_at, id"
        )
        if db.execute(query, (now,)).fetchone() is None:
            return
        self._begin(db)
        # Re-read under the write lock: another process may have applied them meanwhile.
        for wf_id, effect_json, finish_at in db.execute(query, (now,)).fetchall():
            effect = json.loads(effect_json)
            self._EFFECTS[effect["op"]](self, db, effect, wf_id, finish_at)
            db.execute("UPDATE workflows SET effect_pending = 0 WHERE id = ?", (wf_id,))

    # ------------------------------------------------------------------ request pipeline

    def _endpoint(self, handler: Handler, method: str) -> Callable[[Request], Any]:
        if method == "GET":

            async def read(request: Request) -> Response:
                return await self._serve_read(request, handler)

            return read

        async def write(request: Request) -> Response:
            return await self._serve_write(request, handler)

        return write

    def _count_and_authorize(self, request: Request) -> Response | None:
        """Count the request and answer 401 unless the key matches exactly (no ``Bearer``)."""
        self._unsaved["requests_total"] += 1
        if request.headers.get("authorization") != self.api_key:
            return error_response(401, "UNAUTHORIZED", "Missing or invalid API key.")
        return None

    def _fault_response(self, decision: Decision) -> Response:
        status = decision.error_status
        assert status is not None
        self._unsaved["fault." + str(decision.kind)] += 1
        code, message = _FAULT_CODES[status]
        headers = {"Retry-After": self._injector.retry_after_header()} if status == 429 else None
        return error_response(status, code, message, headers)

    async def _serve_read(self, request: Request, handler: Handler) -> Response:
        arrived = asyncio.get_running_loop().time()
        if (refused := self._count_and_authorize(request)) is not None:
            return refused
        decision = self._injector.decide()
        await self._injector.delay(since=arrived)
        if decision.error_status is not None:
            return self._fault_response(decision)
        call = Call(
            request.path_params, request.scope.get("query_string", b""), None, self._clock()
        )
        try:
            answer = handler(self._db(), call)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        return self._response(answer)

    async def _serve_write(self, request: Request, handler: Handler) -> Response:
        arrived = asyncio.get_running_loop().time()
        if (refused := self._count_and_authorize(request)) is not None:
            return refused
        is_post = request.method == "POST"
        decision = self._injector.decide(may_be_slow=is_post)
        if decision.error_status is not None:
            await self._injector.delay(since=arrived)
            return self._fault_response(decision)
        raw = await request.body()
        # Only POSTs carry idempotency keys; an empty header counts as no key.
        key = (request.headers.get("x-rms-requestid") or None) if is_post else None
        if key is not None:
            if key in self._in_flight:
                await self._injector.delay(since=arrived)
                return error_response(
                    409, "REQUEST_IN_PROGRESS", f"A request with id {key} is still being processed."
                )
            # In flight from here until it is answered: a duplicate sent meanwhile sees
            # REQUEST_IN_PROGRESS, one sent after it gets the stored answer.
            self._in_flight.add(key)
        committed = None
        try:
            body = None
            if request.method != "PUT":  # PUT uploads file bytes, not JSON
                try:
                    body = json.loads(raw) if raw.strip() else None
                except ValueError:
                    await self._injector.delay(since=arrived)
                    return error_response(
                        400, "INVALID_JSON", "The request body is not valid JSON."
                    )
            call = Call(
                request.path_params,
                request.scope.get("query_string", b""),
                body,
                self._clock(),
                raw,
            )
            response, committed = self._write(handler, call, key, submission=is_post)
            if committed is not None:
                await committed
            # The latency counts from arrival: the work and its commit happen within it,
            # as a service's own processing does.
            await self._injector.delay(since=arrived)
        finally:
            if key is not None:
                self._in_flight.discard(key)
        if committed is not None and decision.slow:
            # Accepted and committed; only the answer is late. A client that gives up and
            # retries with the same key now gets the stored answer, not a second acceptance.
            self._unsaved["fault.slow"] += 1
            await self._injector.slow_down()
        return response

    def _write(
        self, handler: Handler, call: Call, key: str | None, *, submission: bool
    ) -> tuple[Response, asyncio.Future[None] | None]:
        """Run a write handler in a savepoint of the group transaction.

        Returns the response and, when something was accepted, the commit to await before
        answering. A handler's ApiError rolls back only its own savepoint. Only submissions
        (POSTs) count in ``accepted_total``; a cancel is a write but submits nothing.
        """
        db = self._db()
        committed = self._begin(db)
        db.execute("SAVEPOINT request")
        try:
            if key is not None:
                # Checked under the write lock, so the same key is accepted once even when
                # several processes or simulator instances share the file.
                row = db.execute(
                    "SELECT status, headers, body FROM request_keys WHERE request_id = ?", (key,)
                ).fetchone()
                if row is not None:
                    db.execute("RELEASE request")
                    self._unsaved["replays_total"] += 1
                    headers = json.loads(row[1])
                    headers["x-sim-replay"] = "true"
                    return Response(row[2], status_code=row[0], headers=headers), None
            answer = handler(db, call)
            response = self._response(answer)
            if not 200 <= answer.status < 300:
                db.execute("RELEASE request")
                return response, None
            if key is not None:
                db.execute(
                    "INSERT INTO request_keys "
                    "(request_id, accept_count, status, headers, body, accepted_at) "
                    "VALUES (?, 1, ?, ?, ?, ?) ON CONFLICT (request_id) "
                    "DO UPDATE SET accept_count = accept_count + 1",
                    (
                        key,
                        answer.status,
                        json.dumps(_replay_headers(answer)),
                        response.body,
                        call.now,
                    ),
                )
            db.execute("RELEASE request")
        except ApiError as exc:
            db.execute("ROLLBACK TO request")
            db.execute("RELEASE request")
            return error_response(exc.status, exc.code, exc.message), None
        except BaseException:
            db.execute("ROLLBACK TO request")
            db.execute("RELEASE request")
            raise
        if submission:
            self._unsaved["accepted_total"] += 1
        return response, committed

    @staticmethod
    def _response(answer: Answer) -> Response:
        if answer.body is None:
            return Response(b"", status_code=answer.status, headers=answer.headers)
        return Response(
            _json_bytes(answer.body),
            status_code=answer.status,
            headers=answer.headers,
            media_type="application/json",
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            return error_response(
                405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here."
            )
        return error_response(404, "NOT_FOUND", f"No resource at {request.url.path}.")

    async def _stats_endpoint(self, request: Request) -> Response:
        return Response(_json_bytes(self.stats()), media_type="application/json")

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return Response(_json_bytes({"reset": True}), media_type="application/json")

    # ------------------------------------------------------------------ workflows

    def _start_workflow(
        self,
        db: sqlite3.Connection,
        now: float,
        *,
        wf_type: str,
        name: str,
        subject: str,
        effect: dict[str, Any],
        summary: dict[str, Any],
        output: dict[str, Any],
    ) -> Answer:
        """Record an asynchronous workflow and answer 202 with its Location.

        Whether it will fail is drawn now, once, and stored: a poll must never be able to
        re-roll the outcome of a workflow.
        """
        queued_s, pending_s, running_s = self.workflow_seconds
        failure = None
        if self._injector.workflow_fails():
            self._unsaved["fault.workflow_failed"] += 1
            failure = f"Simulated failure: {wf_type} for {subject} did not complete."
        cursor = db.execute(
            "INSERT INTO workflows (type, name, subject, submit_at, queued_s, pending_s, running_s, "
            "finish_at, failure, cancel_at, effect, effect_pending, summary, output) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
            (
                wf_type,
                name,
                subject,
                now,
                queued_s,
                pending_s,
                running_s,
                now + queued_s + pending_s + running_s,
                failure,
                json.dumps(effect),
                0 if failure else 1,
                json.dumps(summary),
                json.dumps(output),
            ),
        )
        return Answer(202, None, {"Location": f"{WORKFLOWS_PATH}/{cursor.lastrowid}"})

    def _workflow_json(self, row: tuple, now: float) -> dict[str, Any]:
        wf_id, wf_type, name, subject, submit_at, q, p, r, failure, cancel_at, summary, output = row
        status = workflow_status(submit_at, q, p, r, failure, cancel_at, now)
        start_at = submit_at + q
        finish_at = start_at + p + r
        if cancel_at is not None:
            # Progress froze when the cancel was asked for; it never started if it was
            # cancelled while still queued.
            progress = _progress(submit_at, q, p, r, cancel_at)
            started = start_at if cancel_at > start_at else None
            ended = cancel_at + q + p if status == "CANCELLED" else None
        else:
            progress = _progress(submit_at, q, p, r, now)
            started = start_at if now >= start_at else None
            ended = finish_at if status in TERMINAL_STATUSES else None
        done = status == "FINISHED"
        messages = [{"message": failure, "type": "ERROR"}] if status == "FAILED" and failure else []
        return {
            "id": wf_id,
            "tenantName": "sim-tenant",
            "userName": "sim-user",
            "status": status,
            "submitTime": _iso(submit_at),
            "startTime": _iso(started),
            "endTime": _iso(ended),
            "name": name,
            "type": wf_type,
            "summary": json.loads(summary) if done else {},
            "output": json.loads(output) if done else {},
            "progress": progress,
            "messages": messages,
            "jobs": [
                {
                    "id": 1_000_000 + wf_id,
                    "taskId": 1,
                    "workflowId": wf_id,
                    "status": INNER_JOB_WORDS[status],
                    "submitTime": _iso(submit_at),
                    "name": wf_type,
                    "input": {"subject": subject},
                    "output": json.loads(output) if done else {},
                    "percentComplete": progress,
                }
            ],
        }

    def _workflow_row(self, db: sqlite3.Connection, raw_id: str) -> tuple:
        try:
            wf_id = int(raw_id)
        except ValueError:
            raise ApiError(404, "WORKFLOW_NOT_FOUND", f"Workflow {raw_id} not found.") from None
        row = db.execute(f"SELECT {_WF_COLUMNS} FROM workflows WHERE id = ?", (wf_id,)).fetchone()
        if row is None:
            raise ApiError(404, "WORKFLOW_NOT_FOUND", f"Workflow {raw_id} not found.")
        return row

    def _get_workflow(self, db: sqlite3.Connection, call: Call) -> Answer:
        return Answer(
            200, self._workflow_json(self._workflow_row(db, call.path["workflow_id"]), call.now)
        )

    def _list_workflows(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        sql, args = f"SELECT {_WF_COLUMNS} FROM workflows", []
        conditions = []
        if ids_raw := call.query.get("ids", "").strip():
            try:
                ids = [int(part) for part in ids_raw.split(",") if part.strip()]
            except ValueError:
                raise ApiError(
                    400, "INVALID_PARAMETER", "ids must be comma-separated integers."
                ) from None
            conditions.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if wf_type := call.query.get("workflowtype", "").strip():
            conditions.append("type = ?")
            args.append(wf_type)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        rows = db.execute(sql + " ORDER BY id", args).fetchall()
        workflows = [self._workflow_json(row, call.now) for row in rows]
        if wanted := {
            s.strip().upper() for s in call.query.get("status", "").split(",") if s.strip()
        }:
            # Status is derived from the clock, so it can only be filtered after computing it.
            workflows = [wf for wf in workflows if wf["status"] in wanted]
        return Answer(
            200,
            {"totalMatchCount": len(workflows), "workflows": workflows[offset : offset + limit]},
        )

    def _cancel_workflow(self, db: sqlite3.Connection, call: Call) -> Answer:
        row = self._workflow_row(db, call.path["workflow_id"])
        wf_id, _, _, _, submit_at, q, p, r, failure, cancel_at = row[:10]
        status = workflow_status(submit_at, q, p, r, failure, cancel_at, call.now)
        if status in TERMINAL_STATUSES:
            raise ApiError(
                409, "WORKFLOW_NOT_CANCELLABLE", f"Workflow {wf_id} is already {status}."
            )
        if cancel_at is None:
            # Cancelling revokes the effect: a cancelled EDM creation never creates the EDM.
            db.execute(
                "UPDATE workflows SET cancel_at = ?, effect_pending = 0 WHERE id = ?",
                (call.now, wf_id),
            )
        return Answer(202, None, {"Location": f"{WORKFLOWS_PATH}/{wf_id}"})

    # ------------------------------------------------------------------ datasources (EDMs)

    def _datasource_json(self, row: tuple) -> dict[str, Any]:
        name, server, data_version, created_at = row
        return {
            "name": name,
            "type": "EDM",
            "serverName": server,
            "dataVersion": data_version,
            "createDate": _iso(created_at),
        }

    def _find_datasource(self, db: sqlite3.Connection, name: str) -> tuple | None:
        return db.execute(
            "SELECT name, server, data_version, created_at FROM datasources WHERE name = ?", (name,)
        ).fetchone()

    def _datasource_operation(self, db: sqlite3.Connection, call: Call) -> Answer:
        name = _required(call.query, "datasourcename")
        operation = _required(call.query, "operation").upper()
        server = call.query.get("servername", "").strip()
        if server and server not in KNOWN_SERVERS:
            raise ApiError(400, "INVALID_SERVER", f"Unknown server '{server}'.")
        self._apply_due_effects(db, call.now)
        if operation == "CREATE":
            if not server:
                raise ApiError(
                    400, "MISSING_PARAMETER", "The query parameter 'servername' is required."
                )
            pending = db.execute(
                "SELECT 1 FROM workflows WHERE effect_pending = 1 AND subject = ? AND type = 'EDM_CREATION'",
                (name,),
            ).fetchone()
            if pending is not None or self._find_datasource(db, name) is not None:
                raise ApiError(
                    409, "DATASOURCE_EXISTS", f"A datasource named '{name}' already exists."
                )
            return self._start_workflow(
                db,
                call.now,
                wf_type="EDM_CREATION",
                name=name,
                subject=name,
                effect={"op": "create_datasource", "name": name, "server": server},
                summary={
                    "edmName": name,
                    "serverName": server,
                    "dataVersion": CREATED_DATA_VERSION,
                },
                output={"datasourceName": name},
            )
        if operation == "EDM_DATA_UPGRADE":
            if self._find_datasource(db, name) is None:
                raise ApiError(404, "DATASOURCE_NOT_FOUND", f"Datasource '{name}' not found.")
            # The Platform API takes {"edmDataVersion": "22"}; the legacy call upgrades to
            # the latest. Accepting the version here lets the simulator record the target.
            version = call.query.get("edmdataversion", "").strip() or LATEST_DATA_VERSION
            return self._start_workflow(
                db,
                call.now,
                wf_type="EDM_DATA_UPGRADE",
                name=name,
                subject=name,
                effect={"op": "upgrade_datasource", "name": name, "version": version},
                summary={"edmName": name, "dataVersion": version},
                output={"datasourceName": name, "dataVersion": version},
            )
        raise ApiError(400, "INVALID_PARAMETER", f"Unknown operation '{operation}'.")

    def _list_datasources(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        self._apply_due_effects(db, call.now)
        if call.query.get("type", "EDM").strip().upper() == "RDM":
            return self._list_rdms(db, limit, offset)
        total = db.execute("SELECT count(*) FROM datasources").fetchone()[0]
        rows = db.execute(
            "SELECT name, server, data_version, created_at FROM datasources ORDER BY name LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return Answer(
            200, {"totalMatchCount": total, "searchItems": [self._datasource_json(r) for r in rows]}
        )

    def _get_datasource(self, db: sqlite3.Connection, call: Call) -> Answer:
        self._apply_due_effects(db, call.now)
        name = call.path["name"]
        row = self._find_datasource(db, name)
        if row is None:
            raise ApiError(404, "DATASOURCE_NOT_FOUND", f"Datasource '{name}' not found.")
        return Answer(200, self._datasource_json(row))

    def _existing_datasource(self, db: sqlite3.Connection, call: Call) -> str:
        """The ``datasource`` query parameter of a request, which must name a visible EDM."""
        edm = _required(call.query, "datasource")
        self._apply_due_effects(db, call.now)
        if db.execute("SELECT 1 FROM datasources WHERE name = ?", (edm,)).fetchone() is None:
            raise ApiError(404, "DATASOURCE_NOT_FOUND", f"Datasource '{edm}' not found.")
        return edm

    # ------------------------------------------------------------------ portfolios

    @staticmethod
    def _portfolio_json(row: tuple) -> dict[str, Any]:
        pf_id, edm, name, number, description, created_at, accounts, locations, geocoded = row
        return {
            "id": pf_id,
            "name": name,
            "number": number,
            "description": description,
            "datasource": edm,
            "createDate": _iso(created_at),
            "accountsCount": accounts,
            "locationsCount": locations,
            "geocoded": bool(geocoded),
        }

    def _create_portfolio(self, db: sqlite3.Connection, call: Call) -> Answer:
        edm = self._existing_datasource(db, call)
        body = call.body
        if not isinstance(body, dict):
            raise ApiError(
                400, "INVALID_REQUEST", "A JSON object {name, number, description} is required."
            )
        name, number, description = (
            body.get("name"),
            body.get("number", ""),
            body.get("description", ""),
        )
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "INVALID_REQUEST", "Portfolio name is required.")
        if isinstance(number, int) and not isinstance(number, bool):
            number = str(number)
        if not isinstance(number, str) or not isinstance(description, str):
            raise ApiError(
                400, "INVALID_REQUEST", "Portfolio number and description must be strings."
            )
        if len(name) > PORTFOLIO_NAME_MAX:
            raise ApiError(
                400, "INVALID_REQUEST", f"Portfolio name exceeds {PORTFOLIO_NAME_MAX} characters."
            )
        if len(number) > PORTFOLIO_NUMBER_MAX:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                f"Portfolio number exceeds {PORTFOLIO_NUMBER_MAX} characters.",
            )
        try:
            # The UNIQUE constraint is the existence check: one statement instead of two.
            cursor = db.execute(
                "INSERT INTO portfolios (datasource, name, number, description, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (edm, name, number, description, call.now),
            )
        except sqlite3.IntegrityError:
            raise ApiError(
                409, "PORTFOLIO_EXISTS", f"A portfolio named '{name}' already exists in '{edm}'."
            ) from None
        pf_id = cursor.lastrowid
        return Answer(
            201,
            self._portfolio_json((pf_id, edm, name, number, description, call.now, 0, 0, 0)),
            {"Location": f"/riskmodeler/v2/portfolios/{pf_id}?datasource={quote(edm)}"},
        )

    def _list_portfolios(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        edm = self._existing_datasource(db, call)
        total = db.execute(
            "SELECT count(*) FROM portfolios WHERE datasource = ?", (edm,)
        ).fetchone()[0]
        rows = db.execute(
            f"SELECT {_PF_COLUMNS} FROM portfolios "
            "WHERE datasource = ? ORDER BY id LIMIT ? OFFSET ?",
            (edm, limit, offset),
        ).fetchall()
        return Answer(
            200, {"totalMatchCount": total, "searchItems": [self._portfolio_json(r) for r in rows]}
        )

    def _get_portfolio(self, db: sqlite3.Connection, call: Call) -> Answer:
        edm = self._existing_datasource(db, call)
        row = None
        if call.path["portfolio_id"].isdigit():
            row = db.execute(
                f"SELECT {_PF_COLUMNS} FROM portfolios WHERE id = ? AND datasource = ?",
                (int(call.path["portfolio_id"]), edm),
            ).fetchone()
        if row is None:
            raise ApiError(
                404, "PORTFOLIO_NOT_FOUND", f"Portfolio {call.path['portfolio_id']} not found."
            )
        return Answer(200, self._portfolio_json(row))

    # ------------------------------------------------------------------ shared helpers

    @staticmethod
    def _body_object(call: Call, what: str) -> dict[str, Any]:
        if not isinstance(call.body, dict):
            raise ApiError(400, "INVALID_REQUEST", f"A JSON object is required: {what}.")
        return call.body

    @staticmethod
    def _int_id(raw: Any, code: str, what: str) -> int:
        if isinstance(raw, bool):
            raise ApiError(404, code, f"{what} {raw} not found.")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ApiError(404, code, f"{what} {raw} not found.") from None

    def _portfolio_in(self, db: sqlite3.Connection, edm: str, raw_id: Any) -> tuple:
        """The portfolio ``raw_id`` of EDM ``edm`` (which must exist), or 404."""
        if db.execute("SELECT 1 FROM datasources WHERE name = ?", (edm,)).fetchone() is None:
            raise ApiError(404, "DATASOURCE_NOT_FOUND", f"Datasource '{edm}' not found.")
        pf_id = self._int_id(raw_id, "PORTFOLIO_NOT_FOUND", "Portfolio")
        row = db.execute(
            f"SELECT {_PF_COLUMNS} FROM portfolios WHERE id = ? AND datasource = ?", (pf_id, edm)
        ).fetchone()
        if row is None:
            raise ApiError(404, "PORTFOLIO_NOT_FOUND", f"Portfolio {raw_id} not found in '{edm}'.")
        return row

    # ------------------------------------------------------------------ data servers, reference data

    def _list_dataservers(self, db: sqlite3.Connection, call: Call) -> Answer:
        return Answer(
            200, {"totalMatchCount": len(DATA_SERVERS), "searchItems": list(DATA_SERVERS)}
        )

    def _reference_id(self, kind: str, name: str) -> int | None:
        if self._reference is None:
            return zlib.crc32(f"{kind}:{name}".encode()) & 0x7FFFFFFF
        return self._reference[kind].get(name)

    def _reference_known(self, kind: str, ref_id: Any) -> bool:
        if self._reference is None:
            return isinstance(ref_id, int) and not isinstance(ref_id, bool)
        return ref_id in self._reference[kind].values()

    def _reference_lister(self, kind: str) -> Handler:
        def handler(db: sqlite3.Connection, call: Call) -> Answer:
            limit, offset = _limit_offset(call.query)
            names = call.query.getlist("name")
            if names:
                items = [
                    {"id": ref_id, "name": name}
                    for name in dict.fromkeys(names)
                    if (ref_id := self._reference_id(kind, name)) is not None
                ]
            elif self._reference is None:
                items = []  # open reference data: only names asked for are listed
            else:
                items = [{"id": i, "name": n} for n, i in self._reference[kind].items()]
            return Answer(
                200, {"totalMatchCount": len(items), "searchItems": items[offset : offset + limit]}
            )

        return handler

    # ------------------------------------------------------------------ MRI import

    def _create_bucket(self, db: sqlite3.Connection, call: Call) -> Answer:
        bucket_id = db.execute("INSERT INTO buckets (created_at) VALUES (?)", (call.now,)).lastrowid
        return Answer(
            201, {"bucketId": bucket_id}, {"Location": f"/riskmodeler/v1/storage/{bucket_id}"}
        )

    def _bucket(self, db: sqlite3.Connection, raw_id: Any) -> int:
        bucket_id = self._int_id(raw_id, "BUCKET_NOT_FOUND", "Bucket")
        if db.execute("SELECT 1 FROM buckets WHERE id = ?", (bucket_id,)).fetchone() is None:
            raise ApiError(404, "BUCKET_NOT_FOUND", f"Bucket {raw_id} not found.")
        return bucket_id

    def _create_storage_file(self, db: sqlite3.Connection, call: Call) -> Answer:
        bucket_id = self._bucket(db, call.path["bucket_id"])
        body = self._body_object(call, "{fileName, fileSize, fileType}")
        name, size, file_type = body.get("fileName"), body.get("fileSize"), body.get("fileType")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "INVALID_REQUEST", "fileName is required.")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ApiError(400, "INVALID_REQUEST", "fileSize must be a non-negative integer.")
        if file_type not in STORAGE_FILE_TYPES:
            raise ApiError(
                400, "INVALID_REQUEST", f"fileType must be one of {sorted(STORAGE_FILE_TYPES)}."
            )
        file_id = db.execute(
            "INSERT INTO storage_files (bucket_id, file_name, file_size, file_type, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (bucket_id, name, size, file_type, call.now),
        ).lastrowid
        return Answer(
            201,
            {
                "id": file_id,
                "fileId": file_id,
                "fileName": name,
                # The real service hands out cloud-storage credentials; the simulator takes
                # the bytes itself, as a PUT to this path.
                "uploadUrl": f"{UPLOADS_PATH}/{bucket_id}/{file_id}",
                "uploadMethod": "PUT",
            },
            {"Location": f"/riskmodeler/v1/storage/{bucket_id}/path/{file_id}"},
        )

    def _upload_file(self, db: sqlite3.Connection, call: Call) -> Answer:
        bucket_id = self._bucket(db, call.path["bucket_id"])
        file_id = self._int_id(call.path["file_id"], "FILE_NOT_FOUND", "File")
        if (
            db.execute(
                "SELECT 1 FROM storage_files WHERE id = ? AND bucket_id = ?", (file_id, bucket_id)
            ).fetchone()
            is None
        ):
            raise ApiError(
                404, "FILE_NOT_FOUND", f"File {file_id} not found in bucket {bucket_id}."
            )
        # Data rows: non-blank lines after the header line.
        lines = [line for line in call.raw.splitlines() if line.strip()]
        rows = max(0, len(lines) - 1)
        db.execute(
            "UPDATE storage_files SET uploaded_size = ?, data_rows = ? WHERE id = ?",
            (len(call.raw), rows, file_id),
        )
        return Answer(200, {"fileId": file_id, "size": len(call.raw), "dataRows": rows})

    def _create_mapping(self, db: sqlite3.Connection, call: Call) -> Answer:
        bucket_id = self._bucket(db, call.path["bucket_id"])
        file_id = db.execute(
            "INSERT INTO storage_files (bucket_id, file_name, file_size, file_type, uploaded_size, "
            "data_rows, created_at) VALUES (?, 'mapping.mff', 0, 'mapping', 0, 0, ?)",
            (bucket_id, call.now),
        ).lastrowid
        return Answer(
            201,
            {"mappingFileId": file_id},
            {"Location": f"/riskmodeler/v1/storage/{bucket_id}/path/{file_id}"},
        )

    def _uploaded_file(
        self, db: sqlite3.Connection, bucket_id: int, raw_id: Any, file_type: str, field_name: str
    ) -> int:
        file_id = self._int_id(raw_id, "FILE_NOT_FOUND", field_name)
        row = db.execute(
            "SELECT file_type, uploaded_size, data_rows FROM storage_files WHERE id = ? AND bucket_id = ?",
            (file_id, bucket_id),
        ).fetchone()
        if row is None or row[0] != file_type:
            raise ApiError(
                404,
                "FILE_NOT_FOUND",
                f"{field_name} {raw_id} is not a {file_type} file of bucket {bucket_id}.",
            )
        if row[1] is None:
            raise ApiError(
                400, "FILE_NOT_UPLOADED", f"{field_name} {raw_id} has not been uploaded."
            )
        return int(row[2])

    def _start_import(self, db: sqlite3.Connection, call: Call) -> Answer:
        body = self._body_object(call, "the MRI import request")
        if body.get("importType") != "MRI":
            raise ApiError(400, "INVALID_REQUEST", "importType must be 'MRI'.")
        edm = body.get("dataSourceName")
        if not isinstance(edm, str) or not edm:
            raise ApiError(400, "INVALID_REQUEST", "dataSourceName is required.")
        delimiter = body.get("delimiter", "COMMA")
        if delimiter not in MRI_DELIMITERS:
            raise ApiError(
                400, "INVALID_REQUEST", f"delimiter must be one of {sorted(MRI_DELIMITERS)}."
            )
        self._apply_due_effects(db, call.now)
        bucket_id = self._bucket(db, body.get("bucketId"))
        accounts = self._uploaded_file(
            db, bucket_id, body.get("accountsFileId"), "account", "accountsFileId"
        )
        locations = self._uploaded_file(
            db, bucket_id, body.get("locationsFileId"), "location", "locationsFileId"
        )
        self._uploaded_file(db, bucket_id, body.get("mappingFileId"), "mapping", "mappingFileId")
        skip = body.get("skipLines", 1)
        # skipLines counts header lines; one header line is already excluded from the rows.
        if isinstance(skip, int) and skip > 1:
            accounts, locations = max(0, accounts - skip + 1), max(0, locations - skip + 1)
        portfolio = self._portfolio_in(db, edm, body.get("portfolioId"))
        summary = f"Imported {accounts} Accounts and {locations} Locations"
        return self._start_workflow(
            db,
            call.now,
            wf_type="MRI_IMPORT",
            name=f"MRI import into {portfolio[2]}",
            subject=f"{edm}:{portfolio[0]}",
            effect={
                "op": "mri_import",
                "portfolio_id": portfolio[0],
                "accounts": accounts,
                "locations": locations,
                # Imports add accounts and locations to what the portfolio holds.
                "append": True,
            },
            summary={"importSummary": summary},
            output={"portfolioId": portfolio[0], "accounts": accounts, "locations": locations},
        )

    # ------------------------------------------------------------------ treaties

    _TREATY_REQUIRED = ("name", "number", "treatyType")

    def _treaty_json(self, row: tuple, lobs: list[dict[str, Any]]) -> dict[str, Any]:
        tr_id, edm, name, number, body, created_at = row
        return {
            **json.loads(body),
            "id": tr_id,
            "name": name,
            "number": number,
            "datasource": edm,
            "createDate": _iso(created_at),
            "lobs": lobs,
        }

    def _create_treaty(self, db: sqlite3.Connection, call: Call) -> Answer:
        edm = self._existing_datasource(db, call)
        body = self._body_object(call, "the treaty")
        for name in self._TREATY_REQUIRED:
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise ApiError(400, "INVALID_REQUEST", f"Treaty field '{name}' is required.")
        try:
            tr_id = db.execute(
                "INSERT INTO treaties (datasource, name, number, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (edm, body["name"], body["number"], json.dumps(body), call.now),
            ).lastrowid
        except sqlite3.IntegrityError:
            raise ApiError(
                409, "TREATY_EXISTS", f"A treaty named '{body['name']}' already exists in '{edm}'."
            ) from None
        row = (tr_id, edm, body["name"], body["number"], json.dumps(body), call.now)
        return Answer(
            201,
            self._treaty_json(row, []),
            {"Location": f"/riskmodeler/v1/treaties/{tr_id}?datasource={quote(edm)}"},
        )

    def _create_treaty_lobs(self, db: sqlite3.Connection, call: Call) -> Answer:
        edm = self._existing_datasource(db, call)
        if not isinstance(call.body, list) or not call.body:
            raise ApiError(
                400, "INVALID_REQUEST", "A non-empty JSON list [{treatyId, name}] is required."
            )
        created = []
        for item in call.body:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ApiError(
                    400, "INVALID_REQUEST", "Each line of business needs treatyId and name."
                )
            treaty_id = self._int_id(item.get("treatyId"), "TREATY_NOT_FOUND", "Treaty")
            if (
                db.execute(
                    "SELECT 1 FROM treaties WHERE id = ? AND datasource = ?", (treaty_id, edm)
                ).fetchone()
                is None
            ):
                raise ApiError(404, "TREATY_NOT_FOUND", f"Treaty {treaty_id} not found in '{edm}'.")
            db.execute(
                "INSERT OR IGNORE INTO treaty_lobs (treaty_id, name) VALUES (?, ?)",
                (treaty_id, item["name"]),
            )
            lob_id = db.execute(
                "SELECT id FROM treaty_lobs WHERE treaty_id = ? AND name = ?",
                (treaty_id, item["name"]),
            ).fetchone()[0]
            created.append({"id": lob_id, "treatyId": treaty_id, "name": item["name"]})
        return Answer(201, {"totalMatchCount": len(created), "searchItems": created})

    def _list_treaties(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        edm = self._existing_datasource(db, call)
        total = db.execute("SELECT count(*) FROM treaties WHERE datasource = ?", (edm,)).fetchone()[
            0
        ]
        rows = db.execute(
            "SELECT id, datasource, name, number, body, created_at FROM treaties WHERE datasource = ? "
            "ORDER BY id LIMIT ? OFFSET ?",
            (edm, limit, offset),
        ).fetchall()
        lobs: dict[int, list[dict[str, Any]]] = {}
        if rows:
            ids = [r[0] for r in rows]
            for lob_id, treaty_id, name in db.execute(
                f"SELECT id, treaty_id, name FROM treaty_lobs WHERE treaty_id IN ({','.join('?' * len(ids))})",
                ids,
            ):
                lobs.setdefault(treaty_id, []).append({"id": lob_id, "name": name})
        return Answer(
            200,
            {
                "totalMatchCount": total,
                "searchItems": [self._treaty_json(r, lobs.get(r[0], [])) for r in rows],
            },
        )

    # ------------------------------------------------------------------ GeoHaz

    def _start_geohaz(self, db: sqlite3.Connection, call: Call) -> Answer:
        edm = self._existing_datasource(db, call)
        portfolio = self._portfolio_in(db, edm, call.path["portfolio_id"])
        layers = call.body
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, dict) for x in layers)
        ):
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "A non-empty JSON list of geocode/hazard layers is required.",
            )
        types = {layer.get("type") for layer in layers}
        if not types <= {"geocode", "hazard"} or "geocode" not in types:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "Layers must be of type 'geocode' or 'hazard', geocode included.",
            )
        versions = {str(layer.get("type")): str(layer.get("version", "")) for layer in layers}
        return self._start_workflow(
            db,
            call.now,
            wf_type="GEOHAZ",
            name=f"GeoHaz {portfolio[2]}",
            subject=f"{edm}:{portfolio[0]}",
            effect={"op": "geohaz", "portfolio_id": portfolio[0], "versions": versions},
            summary={"geocodedLocations": portfolio[7], "layers": sorted(versions)},
            output={"portfolioId": portfolio[0]},
        )

    # ------------------------------------------------------------------ analyses and groups

    def _analysis_json(self, row: tuple) -> dict[str, Any]:
        an_id, name, is_group, edm, pf_id, item_ids, settings, created_at = row
        return {
            "id": an_id,
            "name": name,
            "type": "group" if is_group else "analysis",
            "isGroup": bool(is_group),
            "edm": edm,
            "portfolioId": pf_id,
            "analysisIds": json.loads(item_ids),
            "createDate": _iso(created_at),
            **json.loads(settings),
        }

    def _select_analyses(self, db: sqlite3.Connection, call: Call, is_group: bool | None) -> Answer:
        limit, offset = _limit_offset(call.query)
        self._apply_due_effects(db, call.now)
        conditions, args = [], []
        if is_group is not None:
            conditions.append("is_group = ?")
            args.append(1 if is_group else 0)
        if names := call.query.getlist("name"):
            conditions.append(f"name IN ({','.join('?' * len(names))})")
            args.extend(names)
        if edm := call.query.get("datasource", "").strip():
            conditions.append("datasource = ?")
            args.append(edm)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        total = db.execute(f"SELECT count(*) FROM analyses{where}", args).fetchone()[0]  # noqa: S608
        rows = db.execute(
            "SELECT id, name, is_group, datasource, portfolio_id, item_ids, settings, created_at "
            f"FROM analyses{where} ORDER BY id LIMIT ? OFFSET ?",  # noqa: S608 -- fixed fragments
            [*args, limit, offset],
        ).fetchall()
        return Answer(
            200, {"totalMatchCount": total, "searchItems": [self._analysis_json(r) for r in rows]}
        )

    def _list_analyses(self, db: sqlite3.Connection, call: Call) -> Answer:
        raw = call.query.get("isgroup", "").strip().lower()
        return self._select_analyses(db, call, None if raw == "" else raw == "true")

    def _list_groups(self, db: sqlite3.Connection, call: Call) -> Answer:
        return self._select_analyses(db, call, True)

    def _analysis_row(
        self, db: sqlite3.Connection, raw_id: Any, is_group: bool | None = None
    ) -> tuple:
        an_id = self._int_id(raw_id, "ANALYSIS_NOT_FOUND", "Analysis")
        row = db.execute(
            "SELECT id, name, is_group, datasource, portfolio_id, item_ids, settings, created_at "
            "FROM analyses WHERE id = ?",
            (an_id,),
        ).fetchone()
        if row is None or (is_group is not None and bool(row[2]) != is_group):
            raise ApiError(404, "ANALYSIS_NOT_FOUND", f"Analysis {raw_id} not found.")
        return row

    def _get_analysis(self, db: sqlite3.Connection, call: Call) -> Answer:
        self._apply_due_effects(db, call.now)
        return Answer(200, self._analysis_json(self._analysis_row(db, call.path["analysis_id"])))

    def _delete_analysis(
        self, db: sqlite3.Connection, call: Call, is_group: bool | None = None
    ) -> Answer:
        self._apply_due_effects(db, call.now)
        row = self._analysis_row(db, call.path["analysis_id"], is_group)
        db.execute("DELETE FROM analyses WHERE id = ?", (row[0],))
        db.execute("DELETE FROM rdm_contents WHERE analysis_id = ?", (row[0],))
        return Answer(204)

    def _delete_group(self, db: sqlite3.Connection, call: Call) -> Answer:
        return self._delete_analysis(db, call, is_group=True)

    def _start_analysis(self, db: sqlite3.Connection, call: Call) -> Answer:
        body = self._body_object(call, "the analysis settings")
        edm = body.get("edm") or call.query.get("datasource", "")
        if not isinstance(edm, str) or not edm:
            raise ApiError(400, "INVALID_REQUEST", "edm is required.")
        job_name = body.get("jobName")
        if not isinstance(job_name, str) or not job_name.strip():
            raise ApiError(400, "INVALID_REQUEST", "jobName is required.")
        self._apply_due_effects(db, call.now)
        portfolio = self._portfolio_in(db, edm, call.path["portfolio_id"])
        for field_name, kind, required in (
            ("modelProfileId", "model_profiles", True),
            ("outputProfileId", "output_profiles", True),
            ("eventRateSchemeId", "event_rate_schemes", False),
        ):
            value = body.get(field_name)
            if value is None and not required:
                continue
            if not self._reference_known(kind, value):
                raise ApiError(400, "INVALID_REFERENCE", f"{field_name} {value!r} does not exist.")
        treaty_ids = body.get("treaties") or []
        if not isinstance(treaty_ids, list):
            raise ApiError(400, "INVALID_REQUEST", "treaties must be a list of treaty ids.")
        for treaty_id in treaty_ids:
            raw = treaty_id.get("id") if isinstance(treaty_id, dict) else treaty_id
            tr_id = self._int_id(raw, "TREATY_NOT_FOUND", "Treaty")
            if (
                db.execute(
                    "SELECT 1 FROM treaties WHERE id = ? AND datasource = ?", (tr_id, edm)
                ).fetchone()
                is None
            ):
                raise ApiError(404, "TREATY_NOT_FOUND", f"Treaty {raw} not found in '{edm}'.")
        settings = _present(
            body,
            "modelProfileId",
            "outputProfileId",
            "eventRateSchemeId",
            "currency",
            "treaties",
            "tagIds",
        )
        return self._start_workflow(
            db,
            call.now,
            wf_type="PROCESS",
            name=job_name,
            subject=f"analysis:{job_name}",
            effect={
                "op": "create_analysis",
                "name": job_name,
                "datasource": edm,
                "portfolio_id": portfolio[0],
                "settings": settings,
            },
            summary={"analysisName": job_name, "portfolioId": portfolio[0]},
            output={"analysisName": job_name},
        )

    def _start_group(self, db: sqlite3.Connection, call: Call) -> Answer:
        body = self._body_object(call, "{name, analysisIds, currency, ...}")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "INVALID_REQUEST", "Group name is required.")
        ids = body.get("analysisIds")
        if not isinstance(ids, list) or not ids:
            raise ApiError(400, "INVALID_REQUEST", "analysisIds must be a non-empty list.")
        self._apply_due_effects(db, call.now)
        item_ids = [self._int_id(i, "ANALYSIS_NOT_FOUND", "Analysis") for i in ids]
        found = {
            row[0]
            for row in db.execute(
                f"SELECT id FROM analyses WHERE id IN ({','.join('?' * len(item_ids))})", item_ids
            )
        }
        missing = [i for i in item_ids if i not in found]
        if missing:
            raise ApiError(
                404, "ANALYSIS_NOT_FOUND", f"Analyses not found: {', '.join(map(str, missing))}."
            )
        settings = _present(
            body, "currency", "numOfSimulations", "simulateToPLT", "propagateDetailedLosses"
        )
        return self._start_workflow(
            db,
            call.now,
            wf_type="GROUPING",
            name=name,
            subject=f"group:{name}",
            effect={
                "op": "create_analysis",
                "name": name,
                "is_group": True,
                "item_ids": item_ids,
                "settings": settings,
            },
            summary={"groupName": name, "itemCount": len(item_ids)},
            output={"groupName": name},
        )

    # ------------------------------------------------------------------ exports to RDM

    def _list_rdms(self, db: sqlite3.Connection, limit: int, offset: int) -> Answer:
        total = db.execute("SELECT count(*) FROM rdms").fetchone()[0]
        rows = db.execute(
            "SELECT r.id, r.name, r.server_id, r.created_at, "
            "(SELECT count(*) FROM rdm_contents c WHERE c.rdm_id = r.id) "
            "FROM rdms r ORDER BY r.name LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        servers = {s["id"]: s["name"] for s in DATA_SERVERS}
        items = [
            {
                "id": rdm_id,
                "databaseId": rdm_id,
                "name": name,
                "type": "RDM",
                "serverId": server_id,
                "serverName": servers.get(server_id, ""),
                "createDate": _iso(created_at),
                "analysisCount": count,
            }
            for rdm_id, name, server_id, created_at, count in rows
        ]
        return Answer(200, {"totalMatchCount": total, "searchItems": items})

    def _start_export(self, db: sqlite3.Connection, call: Call) -> Answer:
        body = self._body_object(call, "{exportType, resourceType, resourceUris, settings}")
        if body.get("exportType") != "RDM_DATABRIDGE":
            raise ApiError(400, "INVALID_REQUEST", "exportType must be 'RDM_DATABRIDGE'.")
        if body.get("resourceType") != "analyses":
            raise ApiError(400, "INVALID_REQUEST", "resourceType must be 'analyses'.")
        uris = body.get("resourceUris")
        settings = body.get("settings")
        if not isinstance(uris, list) or not uris or not isinstance(settings, dict):
            raise ApiError(
                400, "INVALID_REQUEST", "resourceUris (non-empty) and settings are required."
            )
        server_id = settings.get("serverId")
        if server_id not in {s["id"] for s in DATA_SERVERS}:
            raise ApiError(404, "SERVER_NOT_FOUND", f"Data server {server_id!r} not found.")
        self._apply_due_effects(db, call.now)
        analysis_ids = []
        for uri in uris:
            tail = str(uri).rstrip("/").rsplit("/", 1)[-1]
            analysis_ids.append(self._analysis_row(db, tail)[0])
        rdm_name, database_id = settings.get("rdmName"), settings.get("databaseId")
        if bool(rdm_name) == (database_id is not None):
            raise ApiError(
                400, "INVALID_REQUEST", "settings need exactly one of rdmName or databaseId."
            )
        if rdm_name:
            pending = db.execute(
                "SELECT 1 FROM workflows WHERE effect_pending = 1 AND subject = ?",
                (f"rdm:{rdm_name}",),
            ).fetchone()
            if (
                pending is not None
                or db.execute("SELECT 1 FROM rdms WHERE name = ?", (rdm_name,)).fetchone()
            ):
                raise ApiError(409, "RDM_EXISTS", f"An RDM named '{rdm_name}' already exists.")
            subject, target = f"rdm:{rdm_name}", {"rdm_name": rdm_name}
        else:
            rdm_id = self._int_id(database_id, "RDM_NOT_FOUND", "RDM")
            if db.execute("SELECT 1 FROM rdms WHERE id = ?", (rdm_id,)).fetchone() is None:
                raise ApiError(404, "RDM_NOT_FOUND", f"RDM {database_id} not found.")
            subject, target = f"rdm-id:{rdm_id}", {"database_id": rdm_id}
        answer = self._start_workflow(
            db,
            call.now,
            wf_type="EXPORT",
            name=f"Export {len(analysis_ids)} analyses to RDM",
            subject=subject,
            effect={"op": "export", "server_id": server_id, "analysis_ids": analysis_ids, **target},
            summary={
                "exportedAnalyses": len(analysis_ids),
                **({"rdmName": rdm_name} if rdm_name else {}),
            },
            output={"analysisIds": analysis_ids},
        )
        wf_id = answer.headers["Location"].rsplit("/", 1)[-1]
        answer.headers["Location"] = f"{EXPORT_JOBS_PATH}/{wf_id}"
        return answer


def _replay_headers(answer: Answer) -> dict[str, str]:
    # What a replay must carry: the original Location and content type (content-length is
    # recomputed when the stored body is sent again).
    if answer.body is None:
        return answer.headers
    return {**answer.headers, "content-type": "application/json"}
