"""The in-process transport behind the embedded default: what the apps see and send back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batch_pipelines.simulators.embedded import InProcessTransport


async def _echo(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "body": (await request.body()).decode(),
            "key": request.headers.get("x-key"),
        },
        status_code=201,
        headers={"Location": "/things/7"},
    )


async def _stream(request: Request) -> Response:
    async def parts():
        for part in (b"a", b"b", b"c"):
            await asyncio.sleep(0)
            yield part

    # StreamingResponse also listens for the client disconnecting while it streams.
    return StreamingResponse(parts(), media_type="text/plain")


async def _boom(request: Request) -> Response:
    raise RuntimeError("the app broke")


APP = Starlette(
    routes=[
        Route("/echo/{name}", _echo, methods=["GET", "POST", "HEAD"]),
        Route("/stream", _stream),
        Route("/boom", _boom),
    ]
)


def _send(method: str, url: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=InProcessTransport(APP), base_url="http://sim"
        ) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def test_the_app_gets_method_path_query_body_and_headers_and_the_answer_comes_back_read() -> None:
    response = _send("POST", "/echo/x?a=1&b=two", json={"n": 1}, headers={"x-key": "k1"})
    assert response.status_code == 201
    assert response.headers["location"] == "/things/7"
    assert response.json() == {
        "method": "POST",
        "path": "/echo/x",
        "query": {"a": "1", "b": "two"},
        "body": '{"n":1}',
        "key": "k1",
    }


def test_a_streamed_answer_that_listens_for_disconnect_arrives_whole() -> None:
    response = _send("GET", "/stream")
    assert response.status_code == 200 and response.content == b"abc"


def test_a_head_request_gets_headers_and_no_body() -> None:
    response = _send("HEAD", "/echo/x")
    assert response.status_code == 201 and response.content == b""


def test_an_exception_in_the_app_reaches_the_caller() -> None:
    with pytest.raises(RuntimeError, match="the app broke"):
        _send("GET", "/boom")
