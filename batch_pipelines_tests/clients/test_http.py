"""The shared client base: retries, timeouts, typed errors, secrets kept out of sight."""

from __future__ import annotations

import asyncio
import logging
import pickle
import random

import httpx
import pytest

from batch_pipelines.clients.http import (
    BadRequest,
    Conflict,
    PermanentServiceError,
    RateLimited,
    RequestInProgress,
    RequestTimeout,
    ResourceNotFound,
    ServerError,
    ServiceClient,
    ServiceError,
    ServiceUnavailable,
    TransientServiceError,
    Unauthorized,
    UnexpectedResponse,
    error_from_response,
)
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines_tests.clients.support import Script, SleepRecorder, run

KEY = "sk-live-5f2c9a0e7b1d4c3aa9e8"


class KeyedClient(ServiceClient):
    def __init__(self, **kwargs):
        kwargs.setdefault("service_name", "svc")
        super().__init__("https://svc.example.com", KEY, **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {KEY}"}


def make(script: Script, sleep: SleepRecorder | None = None, **kwargs) -> KeyedClient:
    return KeyedClient(transport=script.transport(), sleep=sleep or SleepRecorder(), **kwargs)


async def call(client: ServiceClient, *args, **kwargs) -> httpx.Response:
    async with client:
        return await client.request(*args, **kwargs)


def rm_error(status: int, code: str, message: str = "m", log_id: str = "abc123", headers=None):
    return httpx.Response(
        status, json={"code": code, "message": message, "logId": log_id}, headers=headers
    )


# ---------------------------------------------------------------------- retries


def test_a_429_is_retried_after_exactly_the_retry_after_the_server_asked_for() -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"retry-after-ms": "250"}),
        httpx.Response(200, json={"ok": True}),
    )
    sleep = SleepRecorder()
    response = run(call(make(script, sleep), "GET", "/x"))
    assert response.json() == {"ok": True}
    assert sleep.delays == [7.0, 0.25]
    assert len(script.requests) == 3


def test_a_429_without_retry_after_waits_a_jittered_backoff() -> None:
    script = Script(httpx.Response(429), httpx.Response(429), httpx.Response(204))
    sleep = SleepRecorder()
    run(call(make(script, sleep, rng=random.Random(1)), "GET", "/x"))
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 0.5 and 0 <= sleep.delays[1] <= 1.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_then_success_returns_the_success(status: int) -> None:
    script = Script(httpx.Response(status, text="boom"), httpx.Response(200, json={"n": 1}))
    sleep = SleepRecorder()
    response = run(call(make(script, sleep), "GET", "/x"))
    assert response.json() == {"n": 1}
    assert len(sleep.delays) == 1


def test_a_501_is_not_retried() -> None:
    script = Script(httpx.Response(501))
    with pytest.raises(ServerError) as info:
        run(call(make(script), "GET", "/x"))
    assert info.value.retryable is False and len(script.requests) == 1


def test_exhausting_the_retries_raises_the_typed_transient_error() -> None:
    script = Script(*[httpx.Response(503, json={"code": "UNAVAILABLE", "message": "down"})] * 4)
    sleep = SleepRecorder()
    with pytest.raises(ServerError) as info:
        run(call(make(script, sleep, retry=RetryPolicy(max_retries=3)), "GET", "/x"))
    assert len(script.requests) == 4 and len(sleep.delays) == 3
    error = info.value
    assert isinstance(error, TransientServiceError) and error.retryable
    assert (error.status, error.service_code) == (503, "UNAVAILABLE")


def test_exhausted_rate_limits_raise_rate_limited_with_the_retry_after() -> None:
    script = Script(*[httpx.Response(429, headers={"retry-after": "3"})] * 2)
    with pytest.raises(RateLimited) as info:
        run(call(make(script, retry=RetryPolicy(max_retries=1)), "GET", "/x"))
    assert info.value.retry_after == 3.0 and info.value.status == 429


def test_zero_max_retries_means_a_single_attempt() -> None:
    script = Script(httpx.Response(500))
    sleep = SleepRecorder()
    with pytest.raises(ServerError):
        run(call(make(script, sleep, retry=RetryPolicy(max_retries=0)), "GET", "/x"))
    assert sleep.delays == [] and len(script.requests) == 1


def test_a_409_request_in_progress_is_retried_until_the_original_answers() -> None:
    script = Script(
        rm_error(409, "REQUEST_IN_PROGRESS", "still working"),
        httpx.Response(202, headers={"Location": "/riskmodeler/v1/workflows/9"}),
    )
    response = run(call(make(script), "POST", "/x", idempotency_header=("x-rms-requestid", "r1")))
    assert response.status_code == 202 and len(script.requests) == 2


def test_a_409_request_in_progress_that_never_settles_raises_a_transient_error() -> None:
    script = Script(*[rm_error(409, "REQUEST_IN_PROGRESS")] * 3)
    with pytest.raises(RequestInProgress) as info:
        run(call(make(script, retry=RetryPolicy(max_retries=2)), "POST", "/x"))
    assert isinstance(info.value, TransientServiceError) and info.value.status == 409


def test_a_plain_409_conflict_is_not_retried() -> None:
    script = Script(rm_error(409, "DUPLICATE_NAME", "exists"))
    sleep = SleepRecorder()
    with pytest.raises(Conflict) as info:
        run(call(make(script, sleep), "POST", "/x"))
    assert isinstance(info.value, PermanentServiceError) and not info.value.retryable
    assert len(script.requests) == 1 and sleep.delays == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    script = Script(httpx.Response(status))
    with pytest.raises(PermanentServiceError):
        run(call(make(script), "GET", "/x"))
    assert len(script.requests) == 1


def test_the_idempotency_header_is_the_same_on_every_attempt() -> None:
    script = Script(httpx.Response(500), httpx.Response(429), httpx.Response(201))
    run(
        call(
            make(script), "POST", "/x", json={"a": 1}, idempotency_header=("Idempotency-Key", "k-1")
        )
    )
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["k-1"] * 3
    assert [r.content for r in script.requests] == [b'{"a":1}'] * 3


def test_on_retry_hears_of_every_retry_with_its_delay() -> None:
    heard: list[tuple[int, str, float]] = []

    async def on_retry(attempt: int, error: ServiceError, delay: float) -> None:
        heard.append((attempt, error.code, delay))

    script = Script(
        httpx.Response(429, headers={"retry-after": "1"}), httpx.Response(502), httpx.Response(200)
    )
    run(call(make(script, on_retry=on_retry, rng=random.Random(0)), "GET", "/x"))
    assert [(a, c) for a, c, _ in heard] == [
        (1, "BP-SERVICE-RATE-LIMITED"),
        (2, "BP-SERVICE-SERVER"),
    ]
    assert heard[0][2] == 1.0


def test_a_status_outside_the_expected_ones_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(200, json={}))
    with pytest.raises(UnexpectedResponse):
        run(call(make(script), "POST", "/x", expected=(202,)))


# ---------------------------------------------------------------------- timeouts and transport


def test_a_handler_slower_than_the_timeout_raises_request_timeout_after_retries() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    script = Script(slow, slow)
    sleep = SleepRecorder()
    client = make(script, sleep, timeout_seconds=0.02, retry=RetryPolicy(max_retries=1))
    with pytest.raises(RequestTimeout) as info:
        run(call(client, "GET", "/x"))
    assert len(script.requests) == 2 and len(sleep.delays) == 1
    assert info.value.status is None and info.value.retryable


def test_a_timeout_then_an_answer_succeeds() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    script = Script(slow, httpx.Response(200, json=[1]))
    response = run(call(make(script, timeout_seconds=0.02), "GET", "/x"))
    assert response.json() == [1]


def test_the_timeout_also_bounds_asgi_apps_which_httpx_does_not_time_out() -> None:
    async def app(scope, receive, send):
        await asyncio.sleep(5)

    client = KeyedClient(
        transport=httpx.ASGITransport(app=app),
        sleep=SleepRecorder(),
        timeout_seconds=0.02,
        retry=RetryPolicy(max_retries=0),
    )
    with pytest.raises(RequestTimeout):
        run(call(client, "GET", "/x"))


def test_an_asgi_app_answers_through_the_client() -> None:
    async def app(scope, receive, send):
        assert scope["path"] == "/riskmodeler/v1/ping"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"pong": true}'})

    client = KeyedClient(transport=httpx.ASGITransport(app=app), sleep=SleepRecorder())
    assert run(call(client, "GET", "/riskmodeler/v1/ping")).json() == {"pong": True}


def test_connection_errors_are_retried_and_end_as_service_unavailable() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with pytest.raises(ServiceUnavailable):
        run(call(make(script, retry=RetryPolicy(max_retries=1)), "GET", "/x"))
    assert len(script.requests) == 2


def test_a_dropped_connection_then_success_returns_the_success() -> None:
    script = Script(httpx.RemoteProtocolError("Server disconnected"), httpx.Response(200))
    assert run(call(make(script), "GET", "/x")).status_code == 200


def test_an_httpx_read_timeout_is_a_request_timeout() -> None:
    script = Script(httpx.ReadTimeout("read timed out"))
    with pytest.raises(RequestTimeout):
        run(call(make(script, retry=RetryPolicy(max_retries=0)), "GET", "/x"))


def test_the_http_client_is_created_lazily_and_closed_by_the_context_manager() -> None:
    client = make(Script(httpx.Response(200)))
    assert client._pool is None

    async def go() -> None:
        async with client:
            await client.request("GET", "/x")
            assert client._pool is not None
        assert client._pool is None

    run(go())


def test_a_client_can_be_used_from_a_second_event_loop() -> None:
    client = make(Script(httpx.Response(200), httpx.Response(200)))
    assert run(client.request("GET", "/a")).status_code == 200
    assert run(client.request("GET", "/b")).status_code == 200
    run(client.aclose())


@pytest.mark.parametrize("use_aiohttp", [False, True])
def test_without_a_transport_the_client_builds_its_own_pool(use_aiohttp: bool) -> None:
    client = KeyedClient(use_aiohttp=use_aiohttp, max_connections=7)

    async def go() -> httpx.AsyncBaseTransport:
        inner = client._get_pool()
        await client.aclose()
        return inner

    transport = run(go())
    if use_aiohttp:
        from httpx_aiohttp import AiohttpTransport

        assert isinstance(transport, AiohttpTransport) and transport.limits.max_connections == 7
    else:
        assert isinstance(transport, httpx.AsyncHTTPTransport)


def test_the_client_joins_paths_onto_a_base_with_a_path() -> None:
    script = Script(httpx.Response(200))
    client = ServiceClient(
        "https://h.example.com/api/", None, service_name="s", transport=script.transport()
    )
    run(call(client, "GET", "/v1/things", params={"a": "1"}))
    assert str(script.requests[0].url) == "https://h.example.com/api/v1/things?a=1"


def test_repeated_calls_get_the_url_of_their_own_path_and_params() -> None:
    script = Script(*[httpx.Response(200)] * 7)
    client = make(script)

    async def go() -> None:
        async with client:
            for path, params in [
                ("/x", {"a": 1}),
                ("/x", {"a": True}),
                ("/x", {"a": [1, 2]}),
                ("/x", None),
                ("/y", {"a": 1}),
                ("/x", {"a": 1}),
                ("/x", {}),
            ]:
                await client.request("GET", path, params=params)

    run(go())
    assert [str(r.url) for r in script.requests] == [
        "https://svc.example.com/x?a=1",
        "https://svc.example.com/x?a=true",
        "https://svc.example.com/x?a=1&a=2",
        "https://svc.example.com/x",
        "https://svc.example.com/y?a=1",
        "https://svc.example.com/x?a=1",
        "https://svc.example.com/x",
    ]


def test_cookies_a_service_sets_are_not_sent_back() -> None:
    # One jar shared by a batch's concurrent requests would pin them all to one backend.
    script = Script(
        httpx.Response(200, headers={"Set-Cookie": "AWSALB=abc; Path=/"}), httpx.Response(200)
    )
    client = make(script)

    async def go() -> httpx.Response:
        async with client:
            first = await client.request("GET", "/a")
            await client.request("GET", "/b")
            return first

    assert run(go()).cookies["AWSALB"] == "abc"
    assert "cookie" not in script.requests[1].headers


def test_explicit_headers_and_the_idempotency_header_join_the_auth_header() -> None:
    script = Script(httpx.Response(200), httpx.Response(200), httpx.Response(200))
    client = make(script)

    async def go() -> None:
        async with client:
            await client.request(
                "GET", "/a", headers={"X-Extra": "1"}, idempotency_header=("Idem", "k")
            )
            await client.request("GET", "/b", idempotency_header=("Idem", "k2"))
            await client.request("GET", "/c")

    run(go())
    first, second, third = (r.headers for r in script.requests)
    assert (first["Authorization"], first["X-Extra"], first["Idem"]) == (f"Token {KEY}", "1", "k")
    assert (second["Authorization"], second["Idem"], "X-Extra" in second) == (
        f"Token {KEY}",
        "k2",
        False,
    )
    assert third["Authorization"] == f"Token {KEY}" and "Idem" not in third


@pytest.mark.parametrize("bad", ["not a url", "/relative/only", "http://[::1"])
def test_a_bad_base_url_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        ServiceClient(bad, None, service_name="s")


# ---------------------------------------------------------------------- error mapping


def _map(response: httpx.Response) -> ServiceError:
    response.request = httpx.Request("GET", "https://h/x")
    return error_from_response(response, service="svc", target="GET /x")


def test_a_risk_modeler_error_body_maps_to_code_message_and_log_id() -> None:
    error = _map(
        httpx.Response(
            400,
            json={
                "code": "INT-999",
                "message": "The resource ID is not specified.",
                "logId": "e5c4187b4deee9c09",
            },
        )
    )
    assert isinstance(error, BadRequest) and error.code == "BP-SERVICE-BAD-REQUEST"
    assert (error.status, error.service_code, error.log_id) == (400, "INT-999", "e5c4187b4deee9c09")
    assert "The resource ID is not specified." in str(error) and "e5c4187b4deee9c09" in str(error)


def test_an_openai_error_body_maps_to_code_message_and_type() -> None:
    error = _map(
        httpx.Response(
            401,
            json={
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            headers={"x-request-id": "req_123"},
        )
    )
    assert isinstance(error, Unauthorized)
    assert (error.service_code, error.log_id) == ("invalid_api_key", "req_123")
    assert error.details["error_type"] == "invalid_request_error"
    assert "Incorrect API key provided" in error.message


def test_an_openai_error_without_a_code_uses_its_type() -> None:
    error = _map(
        httpx.Response(
            429,
            json={"error": {"message": "slow down", "type": "rate_limit_exceeded", "code": None}},
        )
    )
    assert isinstance(error, RateLimited) and error.service_code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, ResourceNotFound),
        (405, BadRequest),
        (408, RequestTimeout),
        (409, Conflict),
        (410, BadRequest),
        (418, BadRequest),
        (429, RateLimited),
        (500, ServerError),
        (503, ServerError),
        (302, UnexpectedResponse),
    ],
)
def test_statuses_map_to_typed_errors(status: int, cls: type[ServiceError]) -> None:
    error = _map(httpx.Response(status, text="<html>nope</html>"))
    assert type(error) is cls and error.status == status
    assert isinstance(error, BatchPipelinesError)
    assert "<html>nope</html>" in error.message


def test_every_error_class_has_its_own_stable_code() -> None:
    classes = [
        ServiceError,
        TransientServiceError,
        RateLimited,
        ServerError,
        RequestTimeout,
        ServiceUnavailable,
        RequestInProgress,
        PermanentServiceError,
        BadRequest,
        Unauthorized,
        ResourceNotFound,
        Conflict,
        UnexpectedResponse,
    ]
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes) and all(c.startswith("BP-SERVICE") for c in codes)


def test_a_long_non_json_error_body_is_cut_short() -> None:
    error = _map(httpx.Response(500, text="x" * 5000))
    assert len(error.message) < 400 and error.message.endswith("...")


def test_typed_errors_survive_pickling() -> None:
    error = _map(
        httpx.Response(429, json={"code": "TOO_MANY", "message": "m"}, headers={"retry-after": "2"})
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimited
    assert (clone.status, clone.service_code, clone.retry_after, str(clone)) == (
        429,
        "TOO_MANY",
        2.0,
        str(error),
    )


# ---------------------------------------------------------------------- secrets


def test_the_api_key_is_sent_in_headers_but_not_shown_by_repr() -> None:
    script = Script(httpx.Response(200))
    client = make(script)
    run(call(client, "GET", "/x"))
    assert script.requests[0].headers["Authorization"] == f"Token {KEY}"
    assert KEY not in repr(client) and KEY not in str(vars(client))


def test_a_key_echoed_back_in_an_error_body_is_redacted_from_the_error() -> None:
    script = Script(
        httpx.Response(
            401,
            json={
                "error": {
                    "message": f"Incorrect API key provided: {KEY}",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    with pytest.raises(Unauthorized) as info:
        run(call(make(script), "GET", "/x"))
    error = info.value
    for text in (str(error), repr(error), error.message, str(error.to_dict())):
        assert KEY not in text
    assert "***" in error.message


def test_the_key_never_reaches_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(
        httpx.Response(500, json={"code": "E", "message": f"bad key {KEY}"}),
        httpx.ConnectError(f"cannot connect with {KEY}"),
        httpx.Response(400, json={"code": "E", "message": f"bad key {KEY}"}),
    )
    with pytest.raises(BadRequest) as info:
        run(call(make(script), "GET", "/x"))
    assert caplog.records, "the client should log its attempts"
    assert any(r.name == "batch_pipelines.clients" for r in caplog.records)
    assert KEY not in caplog.text
    assert KEY not in str(info.value)


def test_a_transport_error_mentioning_the_key_is_redacted() -> None:
    script = Script(httpx.ConnectError(f"proxy refused {KEY}"))
    with pytest.raises(ServiceUnavailable) as info:
        run(call(make(script, retry=RetryPolicy(max_retries=0)), "GET", "/x"))
    assert KEY not in str(info.value) and info.value.__cause__ is None
