"""A stand-in for Moody's Risk Modeler (IRP) that behaves like the real one, failures included.

The engine's hard problems are all about the service's behaviour over time and under
failure: workflows that take a while, answers that get lost after the work was accepted,
retries that must not submit twice, a process that dies mid-batch. So this simulator keeps
its state in a SQLite file (it survives restarts and kills -- every acceptance is committed
before it is answered), derives workflow status from the clock (no background task to
drive, so a restarted simulator resumes exactly where the old one was), and honours
``x-rms-requestid`` with stored responses that are replayed.

Shape follows /work/shared/reference/external-apis.md. Adding an endpoint means writing one
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
import json
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
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
    UNIQUE (datasource, name)
);
"""
# Tables emptied by reset(); AUTOINCREMENT sequences are kept on purpose so an id a client
# still holds from before a reset can never name a different, newer object.
_STATE_TABLES = ("counters", "request_keys", "workflows", "datasources", "portfolios")

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


@dataclass(slots=True)
class Call:
    """What a handler sees of a request: no Starlette objects, so handlers stay synchronous."""

    path: dict[str, Any]
    query: QueryParams
    body: Any
    now: float


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


class RiskModelerSimulator:
    """The Risk Modeler as an ASGI app (``.app``) over a SQLite file.

    Use in-process with ``httpx.ASGITransport(app=sim.app)`` or serve it with uvicorn (see
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

    _EFFECTS: dict[str, Callable[..., None]] = {
        "create_datasource": _apply_create_datasource,
        "upgrade_datasource": _apply_upgrade_datasource,
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
        if (refused := self._count_and_authorize(request)) is not None:
            return refused
        decision = self._injector.decide()
        await self._injector.delay()
        if decision.error_status is not None:
            return self._fault_response(decision)
        call = Call(request.path_params, request.query_params, None, self._clock())
        try:
            answer = handler(self._db(), call)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        return self._response(answer)

    async def _serve_write(self, request: Request, handler: Handler) -> Response:
        if (refused := self._count_and_authorize(request)) is not None:
            return refused
        is_post = request.method == "POST"
        decision = self._injector.decide(may_be_slow=is_post)
        if decision.error_status is not None:
            await self._injector.delay()
            return self._fault_response(decision)
        raw = await request.body()
        # Only POSTs carry idempotency keys; an empty header counts as no key.
        key = (request.headers.get("x-rms-requestid") or None) if is_post else None
        if key is not None:
            if key in self._in_flight:
                await self._injector.delay()
                return error_response(
                    409, "REQUEST_IN_PROGRESS", f"A request with id {key} is still being processed."
                )
            # In flight from here until its acceptance is committed: a duplicate sent during
            # the latency or before the commit sees REQUEST_IN_PROGRESS, one sent after it
            # gets the stored answer.
            self._in_flight.add(key)
        try:
            await self._injector.delay()
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                return error_response(400, "INVALID_JSON", "The request body is not valid JSON.")
            call = Call(request.path_params, request.query_params, body, self._clock())
            response, committed = self._write(handler, call, key, submission=is_post)
            if committed is not None:
                await committed
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
            return self._start_workflow(
                db,
                call.now,
                wf_type="EDM_DATA_UPGRADE",
                name=name,
                subject=name,
                effect={"op": "upgrade_datasource", "name": name, "version": LATEST_DATA_VERSION},
                summary={"edmName": name, "dataVersion": LATEST_DATA_VERSION},
                output={"datasourceName": name, "dataVersion": LATEST_DATA_VERSION},
            )
        raise ApiError(400, "INVALID_PARAMETER", f"Unknown operation '{operation}'.")

    def _list_datasources(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        self._apply_due_effects(db, call.now)
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
        pf_id, edm, name, number, description, created_at = row
        return {
            "id": pf_id,
            "name": name,
            "number": number,
            "description": description,
            "datasource": edm,
            "createDate": _iso(created_at),
            "accountsCount": 0,
            "locationsCount": 0,
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
            self._portfolio_json((pf_id, edm, name, number, description, call.now)),
            {"Location": f"/riskmodeler/v2/portfolios/{pf_id}?datasource={quote(edm)}"},
        )

    def _list_portfolios(self, db: sqlite3.Connection, call: Call) -> Answer:
        limit, offset = _limit_offset(call.query)
        edm = self._existing_datasource(db, call)
        total = db.execute(
            "SELECT count(*) FROM portfolios WHERE datasource = ?", (edm,)
        ).fetchone()[0]
        rows = db.execute(
            "SELECT id, datasource, name, number, description, created_at FROM portfolios "
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
                "SELECT id, datasource, name, number, description, created_at FROM portfolios "
                "WHERE id = ? AND datasource = ?",
                (int(call.path["portfolio_id"]), edm),
            ).fetchone()
        if row is None:
            raise ApiError(
                404, "PORTFOLIO_NOT_FOUND", f"Portfolio {call.path['portfolio_id']} not found."
            )
        return Answer(200, self._portfolio_json(row))


def _replay_headers(answer: Answer) -> dict[str, str]:
    # What a replay must carry: the original Location and content type (content-length is
    # recomputed when the stored body is sent again).
    if answer.body is None:
        return answer.headers
    return {**answer.headers, "content-type": "application/json"}
