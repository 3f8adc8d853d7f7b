"""A config service that keeps user preferences and fails like a real one.

Preference batches must keep running when the config service is slow, rate-limited or down
(the client retries, the ConfigDatabaseClient falls back to its cache or the job's default
preferences). This ASGI app serves the API ``clients.config_service`` speaks, from memory,
with the shared fault plan (5xx, 429 with Retry-After, latency) and a ``down`` switch that
answers 503 to everything until it is turned off again, to test fallbacks.

Every write gets the next sequence number; ``/changes`` pages by it, so a reader with a
cursor sees each write once, deletions included (as ``"deleted": true`` records).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_pipelines.simulators.faults import FaultInjector, FaultPlan

DEFAULT_API_KEY = "config-service-simulator-key"
PAGE_SIZE = 500
FREQUENCIES = frozenset({"hourly", "daily", "weekly", "biweekly", "monthly"})
_TIME = re.compile(r"^\d{2}:\d{2}$")
_REQUIRED = ("tenant_id", "user_id", "feature_type", "frequency", "preferred_time", "timezone")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _error(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return _json({"error": {"code": code, "message": message, "param": param}}, status, headers)


def record_problem(record: Any) -> tuple[str, str] | None:
    """(field, problem) of the first thing the service would refuse in a preference."""
    if not isinstance(record, dict):
        return "body", "must be a JSON object"
    for name in _REQUIRED:
        if not isinstance(record.get(name), str) or not record[name].strip():
            return name, "is required (a non-empty string)"
    if record["frequency"] not in FREQUENCIES:
        return "frequency", f"must be one of {', '.join(sorted(FREQUENCIES))}"
    if not _TIME.match(record["preferred_time"]):
        return "preferred_time", "must be HH:MM"
    try:
        ZoneInfo(record["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        return "timezone", "is not an IANA timezone"
    if not isinstance(record.get("template_overrides", {}), dict):
        return "template_overrides", "must be an object"
    return None


class ConfigServiceSimulator:
    """The preference API as an ASGI app (``.app``); ``down`` makes every call answer 503."""

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        faults: FaultPlan = FaultPlan(),  # noqa: B008 -- frozen
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_key = api_key
        self.faults = faults
        self.clock = clock
        self.down = False
        self.reset()
        user_path = "/v1/users/{user_id}/preferences/{feature_type}"
        self.app = Starlette(
            routes=[
                Route("/v1/preferences", self._list, methods=["GET"]),
                Route("/v1/preferences/changes", self._changes, methods=["GET"]),
                Route(user_path, self._get, methods=["GET"]),
                Route(user_path, self._put, methods=["PUT"]),
                Route(user_path, self._delete, methods=["DELETE"]),
                Route("/_sim/stats", self._stats_endpoint, methods=["GET"]),
            ],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    def reset(self) -> None:
        self._injector = FaultInjector(self.faults)
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._sequence = 0
        self._counts: Counter[str] = Counter()

    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a preference directly (tests and demos); returns it with its updated_at."""
        problem = record_problem(record)
        if problem is not None:
            raise ValueError(f"{problem[0]} {problem[1]}")
        self._sequence += 1
        stored = {
            "template_overrides": {},
            "enabled": True,
            "deleted": False,
            "preferred_day": None,
            **record,
            "updated_at": self.clock().isoformat(),
            "_sequence": self._sequence,
        }
        self._records[(stored["user_id"], stored["feature_type"])] = stored
        return _public(stored)

    def delete(self, user_id: str, feature_type: str) -> bool:
        stored = self._records.get((user_id, feature_type))
        if stored is None or stored["deleted"]:
            return False
        self._sequence += 1
        stored.update(
            deleted=True,
            enabled=False,
            updated_at=self.clock().isoformat(),
            _sequence=self._sequence,
        )
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": self._counts["requests_total"],
            "preferences": sum(1 for r in self._records.values() if not r["deleted"]),
            "faults_injected": dict(sorted(self._injector.counts.items())),
        }

    async def _gate(self, request: Request) -> Response | None:
        """Authentication, the down switch and injected faults, before any real work."""
        self._counts["requests_total"] += 1
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "missing or wrong bearer token")
        if self.down:
            self._injector.record("down")
            return _error(503, "unavailable", "config service is down (simulated)")
        await self._injector.delay()
        decision = self._injector.decide()
        if decision.error_status is not None:
            self._injector.record(str(decision.kind))
            if decision.error_status == 429:
                return _error(
                    429,
                    "rate_limited",
                    "slow down (simulated)",
                    headers={"Retry-After": self._injector.retry_after_header()},
                )
            return _error(decision.error_status, "server_error", "server error (simulated)")
        return None

    async def _list(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        feature_type = request.query_params.get("feature_type")
        if not feature_type:
            return _error(400, "invalid_request", "feature_type is required", param="feature_type")
        matching = sorted(
            (
                r
                for r in self._records.values()
                if r["feature_type"] == feature_type and not r["deleted"]
            ),
            key=lambda r: r["user_id"],
        )
        try:
            start = int(request.query_params.get("page_token") or 0)
        except ValueError:
            return _error(
                400,
                "invalid_request",
                "page_token is not one this service issued",
                param="page_token",
            )
        page = matching[start : start + PAGE_SIZE]
        next_token = str(start + PAGE_SIZE) if start + PAGE_SIZE < len(matching) else None
        return _json({"preferences": [_public(r) for r in page], "next_page_token": next_token})

    async def _changes(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        try:
            after = int(request.query_params.get("cursor") or 0)
            limit = int(request.query_params.get("limit") or PAGE_SIZE)
        except ValueError:
            return _error(
                400, "invalid_request", "cursor and limit must be integers", param="cursor"
            )
        changed = sorted(
            (r for r in self._records.values() if r["_sequence"] > after),
            key=lambda r: r["_sequence"],
        )
        page = changed[: max(1, limit)]
        next_cursor = str(page[-1]["_sequence"]) if page else str(after)
        return _json({"preferences": [_public(r) for r in page], "next_cursor": next_cursor})

    async def _get(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        stored = self._records.get(
            (request.path_params["user_id"], request.path_params["feature_type"])
        )
        if stored is None or stored["deleted"]:
            return _error(404, "not_found", "no preference for this user and feature type")
        return _json(_public(stored))

    async def _put(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        try:
            record = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request", "body is not JSON", param="body")
        problem = record_problem(record)
        if problem is not None:
            return _error(400, "invalid_field", f"{problem[0]} {problem[1]}", param=problem[0])
        path = (request.path_params["user_id"], request.path_params["feature_type"])
        if (record["user_id"], record["feature_type"]) != path:
            return _error(
                400,
                "invalid_field",
                "user_id and feature_type must match the path",
                param="user_id",
            )
        return _json(self.put(record))

    async def _delete(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        deleted = self.delete(request.path_params["user_id"], request.path_params["feature_type"])
        return (
            Response(b"", status_code=204)
            if deleted
            else _error(404, "not_found", "no preference to delete")
        )

    async def _stats_endpoint(self, request: Request) -> Response:
        return _json(self.stats())

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(
            status,
            "not_found" if status == 404 else "method_not_allowed",
            f"{request.method} {request.url.path}",
        )


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if not k.startswith("_")}


EMBEDDED_CONFIG_SERVICE_URL = "http://config-service.simulator"


def config_service_client(
    sim: ConfigServiceSimulator, *, api_key: str | None = None, **kwargs: Any
):
    """A real ``ConfigServiceClient`` wired to ``sim`` in process (tests, demo, benchmarks);
    with the simulator's key unless ``api_key`` says otherwise."""
    from batch_pipelines.clients.config_service import ConfigServiceClient
    from batch_pipelines.simulators.embedded import InProcessTransport

    return ConfigServiceClient(
        EMBEDDED_CONFIG_SERVICE_URL,
        api_key if api_key is not None else sim.api_key,
        transport=InProcessTransport(sim.app),
        **kwargs,
    )
