"""The aiohttp transport against a real local server: bodies arrive whole and decoded,
errors keep their types."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from aiohttp import web

from batch_pipelines.clients.http import ServerError, ServiceClient, ServiceUnavailable
from batch_pipelines.core.backoff import RetryPolicy

BIG = b"x" * 200_000  # many of aiohttp's read chunks


async def _json(request: web.Request) -> web.Response:
    body = gzip.compress(json.dumps({"ok": True, "echo": request.query.get("q")}).encode())
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=BIG)


async def _error(request: web.Request) -> web.Response:
    return web.json_response({"code": "BOOM", "message": "broken", "logId": "l1"}, status=503)


async def _hang_up(request: web.Request) -> web.StreamResponse:
    # Promises 100 bytes, sends 10, then drops the connection.
    response = web.StreamResponse(headers={"Content-Length": "100"})
    await response.prepare(request)
    await response.write(b"0123456789")
    request.transport.close()
    return response


async def _with_server(check) -> None:
    app = web.Application()
    app.router.add_get("/json", _json)
    app.router.add_get("/big", _big)
    app.router.add_get("/error", _error)
    app.router.add_get("/hang-up", _hang_up)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]  # the port the OS picked
    client = ServiceClient(
        f"http://127.0.0.1:{port}",
        "key",
        service_name="svc",
        use_aiohttp=True,
        retry=RetryPolicy(max_retries=0),
        timeout_seconds=5,
    )
    try:
        async with client:
            await check(client)
    finally:
        await runner.cleanup()


def test_a_compressed_json_answer_is_decoded_and_a_large_one_arrives_whole() -> None:
    async def check(client: ServiceClient) -> None:
        assert await client.request_json("GET", "/json", params={"q": "hi"}) == {
            "ok": True,
            "echo": "hi",
        }
        assert (await client.request("GET", "/big")).content == BIG

    asyncio.run(_with_server(check))


def test_an_error_answer_and_a_dropped_connection_keep_their_error_types() -> None:
    async def check(client: ServiceClient) -> None:
        with pytest.raises(ServerError) as info:
            await client.request("GET", "/error")
        assert info.value.service_code == "BOOM" and info.value.log_id == "l1"
        with pytest.raises(ServiceUnavailable):
            await client.request("GET", "/hang-up")

    asyncio.run(_with_server(check))
