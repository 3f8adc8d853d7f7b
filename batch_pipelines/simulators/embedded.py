"""The embedded default: real clients wired to in-process simulators.

Tests, the demo and the benchmarks use these so that everything runs on a laptop with no
network; production passes real base URLs to the same clients instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.clients.risk_modeler import RiskModelerClient
from batch_pipelines.clients.teams import TeamsClient
from batch_pipelines.simulators.models import ModelSimulator
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.simulators.teams import TeamsSimulator

EMBEDDED_RISK_MODELER_URL = "http://risk-modeler.simulator"
EMBEDDED_MODELS_URL = "http://models.simulator"
EMBEDDED_TEAMS_URL = "http://teams.simulator/webhook/batch-pipelines"


class InProcessTransport(httpx.AsyncBaseTransport):
    """Sends requests to an ASGI app in the same event loop: httpx's ``ASGITransport``,
    trimmed for small buffered answers.

    The response comes back with its body already read (as ``httpx.Response(content=)``),
    instead of as a stream that the client then reads chunk by chunk through httpx's
    decoders, and no event is created per request unless the app listens for the client
    disconnecting. At thousands of calls a second both showed up in profiles as a fair
    share of a call's CPU. App exceptions propagate, as with ``ASGITransport``.
    """

    def __init__(self, app: Any, client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self.app = app
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "server": (url.host, url.port),
            "client": self.client,
            "root_path": "",
        }
        sent_body = complete = False
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        answered: asyncio.Future[None] | None = None

        async def receive() -> dict[str, Any]:
            nonlocal sent_body, answered
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            # Asked again: the app listens for a disconnect, which comes once it has answered.
            if not complete:
                answered = answered or asyncio.get_running_loop().create_future()
                await answered
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                if chunk := message.get("body", b""):
                    parts.append(chunk)
                if not message.get("more_body", False):
                    complete = True
                    if answered is not None and not answered.done():
                        answered.set_result(None)

        await self.app(scope, receive, send)
        if status is None:
            raise RuntimeError("the in-process app returned without starting a response")
        content = b"" if request.method == "HEAD" else b"".join(parts)
        return httpx.Response(status, headers=headers, content=content, request=request)


def risk_modeler_client(sim: RiskModelerSimulator, **kwargs: Any) -> RiskModelerClient:
    return RiskModelerClient(
        EMBEDDED_RISK_MODELER_URL, sim.api_key, transport=InProcessTransport(sim.app), **kwargs
    )


def model_client(sim: ModelSimulator, *, api_key: str | None = None, **kwargs: Any) -> ModelClient:
    return ModelClient(
        EMBEDDED_MODELS_URL, api_key, transport=InProcessTransport(sim.app), **kwargs
    )


def teams_client(sim: TeamsSimulator, **kwargs: Any) -> TeamsClient:
    return TeamsClient(EMBEDDED_TEAMS_URL, transport=InProcessTransport(sim.app), **kwargs)
