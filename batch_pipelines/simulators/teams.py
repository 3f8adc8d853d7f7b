"""A Microsoft Teams Workflows webhook that is as strict as the real one.

Teams Workflows accept Adaptive Cards only and messages of about 28 KB at most; a legacy
MessageCard or an oversized card is refused. Notifications are the last thing a batch does,
so a wrong payload would otherwise only be noticed in production. The simulator refuses
what Teams refuses, answers 202 like Workflows does, and keeps what it accepted so tests
and the demo can show the cards.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_pipelines.simulators.faults import FaultInjector, FaultPlan

MAX_MESSAGE_BYTES = 28 * 1024
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
# Cards kept in memory; old ones are dropped so a long benchmark cannot grow without bound.
MAX_KEPT_CARDS = 10_000


def card_problem(payload: Any) -> str | None:
    """Why Teams would refuse this message, or None when it has the accepted shape."""
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return 'the body must be an object with "type": "message"'
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return '"attachments" must be a non-empty array'
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, dict) or attachment.get("contentType") != ADAPTIVE_CARD:
            return f'attachments[{i}].contentType must be "{ADAPTIVE_CARD}"'
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            return f'attachments[{i}].content must be an object with "type": "AdaptiveCard"'
    return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(
        json.dumps(body).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class TeamsSimulator:
    """``POST /webhook/{name}`` as an ASGI app (``.app``); ``cards()`` lists what was accepted."""

    def __init__(self, *, faults: FaultPlan = FaultPlan()) -> None:  # noqa: B008 -- frozen
        self.faults = faults
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/webhook/{name:path}", self._webhook, methods=["POST"]),
                Route("/_sim/cards", self._cards_endpoint, methods=["GET"]),
                Route("/_sim/stats", self._stats_endpoint, methods=["GET"]),
                Route("/_sim/reset", self._reset_endpoint, methods=["POST"]),
            ],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    def reset(self) -> None:
        self._injector = FaultInjector(self.faults)
        self._cards: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_CARDS)
        self._counts: Counter[str] = Counter()

    def cards(self) -> list[dict[str, Any]]:
        """Accepted cards, oldest first: ``{"webhook", "card", "received_at"}`` each."""
        return list(self._cards)

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": self._counts["requests_total"],
            "accepted_total": self._counts["accepted_total"],
            "rejected_total": self._counts["rejected_total"],
            "faults_injected": dict(sorted(self._injector.counts.items())),
        }

    async def _webhook(self, request: Request) -> Response:
        self._counts["requests_total"] += 1
        decision = self._injector.decide(may_be_slow=True)
        await self._injector.delay()
        if decision.error_status is not None:
            self._injector.record(str(decision.kind))
            if decision.error_status == 429:
                return _error(
                    429,
                    "TooManyRequests",
                    "Rate limited (simulated).",
                    {"Retry-After": self._injector.retry_after_header()},
                )
            return _error(decision.error_status, "ServerError", "Server error (simulated).")
        raw = await request.body()
        if len(raw) > MAX_MESSAGE_BYTES:
            self._counts["rejected_total"] += 1
            return _error(
                413,
                "MessageTooLarge",
                f"Message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}.",
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if (problem := card_problem(payload)) is not None:
            self._counts["rejected_total"] += 1
            return _error(400, "InvalidRequestContent", problem)
        name = request.path_params["name"]
        now = time.time()
        for attachment in payload["attachments"]:
            self._cards.append({"webhook": name, "card": attachment["content"], "received_at": now})
        self._counts["accepted_total"] += 1
        if decision.slow:
            self._injector.record("slow")
            await self._injector.slow_down()
        return Response(b"", status_code=202)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(
            status,
            "NotFound" if status == 404 else "MethodNotAllowed",
            f"{request.method} {request.url.path}",
        )

    async def _cards_endpoint(self, request: Request) -> Response:
        return Response(json.dumps({"cards": self.cards()}).encode(), media_type="application/json")

    async def _stats_endpoint(self, request: Request) -> Response:
        return Response(json.dumps(self.stats()).encode(), media_type="application/json")

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return Response(b'{"reset":true}', media_type="application/json")
