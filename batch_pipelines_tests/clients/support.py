"""Small fakes shared by the client tests: a scripted transport and a sleep recorder.

The tests never wait for real: sleeps are recorded, and only the timeout tests spend a few
hundredths of a second on purpose.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import httpx


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class SleepRecorder:
    """Stands in for asyncio.sleep: remembers every requested delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Script:
    """A MockTransport handler that answers from a list, one entry per request, and keeps
    the requests. An entry is an ``httpx.Response``, an exception to raise, or a callable
    (request -> response, may be async)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected extra request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(request)
            if asyncio.iscoroutine(answer):
                answer = await answer
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def json_bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]
