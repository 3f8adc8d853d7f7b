"""The OpenAI-compatible model client."""

from __future__ import annotations

import json

import httpx
import pytest

from batch_pipelines.clients.http import BadRequest, RateLimited, Unauthorized, UnexpectedResponse
from batch_pipelines.clients.models import ChatResult, EmbeddingResult, ModelClient
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines_tests.clients.support import Script, SleepRecorder, run

KEY = "sk-proj-Zq8w7e6r5t4y3u2i1o0p"


def make(script: Script, **kwargs) -> ModelClient:
    kwargs.setdefault("sleep", SleepRecorder())
    return ModelClient("https://llm.example.com/v1", KEY, transport=script.transport(), **kwargs)


def completion(content: str | None = "hello", usage: dict | None = None) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x-2025",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def test_chat_posts_the_messages_with_a_bearer_key_and_returns_the_content() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    script = Script(httpx.Response(200, json=completion(usage=usage)))
    result = run(
        make(script).chat(
            [{"role": "user", "content": "hi"}], model="gpt-x", temperature=0.0, max_tokens=10
        )
    )
    assert isinstance(result, ChatResult)
    assert (result.content, result.model, result.response_id, result.usage) == (
        "hello",
        "gpt-x-2025",
        "chatcmpl-1",
        usage,
    )
    assert result.finish_reason == "stop" and result.latency_seconds >= 0
    request = script.requests[0]
    assert request.url.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.0,
        "max_tokens": 10,
    }
    assert "Idempotency-Key" not in request.headers


def test_optional_parameters_are_left_out_when_not_given() -> None:
    script = Script(httpx.Response(200, json=completion()))
    run(make(script).chat([], model="m"))
    assert set(json.loads(script.requests[0].content)) == {"model", "messages"}


def test_missing_usage_is_none_not_zero() -> None:
    script = Script(httpx.Response(200, json=completion()))
    assert run(make(script).chat([], model="m")).usage is None


def test_null_content_becomes_an_empty_string() -> None:
    script = Script(httpx.Response(200, json=completion(content=None)))
    assert run(make(script).chat([], model="m")).content == ""


def test_the_idempotency_key_is_sent_on_every_retry() -> None:
    script = Script(
        httpx.Response(
            429,
            json={
                "error": {"message": "slow", "type": "rate_limit", "code": "rate_limit_exceeded"}
            },
        ),
        httpx.Response(200, json=completion()),
    )
    run(make(script).chat([], model="m", idempotency_key="item-3-phase-2"))
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["item-3-phase-2"] * 2


def test_rate_limits_that_persist_raise_rate_limited_with_the_service_code() -> None:
    body = {"error": {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}}
    script = Script(*[httpx.Response(429, json=body, headers={"retry-after-ms": "20"})] * 3)
    sleep = SleepRecorder()
    with pytest.raises(RateLimited) as info:
        run(make(script, sleep=sleep, retry=RetryPolicy(max_retries=2)).chat([], model="m"))
    assert info.value.service_code == "rate_limit_exceeded" and sleep.delays == [0.02, 0.02]


def test_a_wrong_key_is_unauthorized_and_the_key_is_redacted() -> None:
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    script = Script(httpx.Response(401, json=body))
    with pytest.raises(Unauthorized) as info:
        run(make(script).chat([], model="m"))
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert info.value.service_code == "invalid_api_key"


def test_a_bad_request_is_not_retried() -> None:
    script = Script(
        httpx.Response(
            400,
            json={
                "error": {
                    "message": "bad model",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": None,
                }
            },
        )
    )
    with pytest.raises(BadRequest) as info:
        run(make(script).chat([], model="nope"))
    assert info.value.details["error_param"] == "model" and len(script.requests) == 1


def test_a_completion_without_choices_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(200, json={"id": "x", "choices": []}))
    with pytest.raises(UnexpectedResponse):
        run(make(script).chat([], model="m"))


def test_a_non_json_success_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(UnexpectedResponse):
        run(make(script).chat([], model="m"))


def test_embed_returns_vectors_in_input_order() -> None:
    body = {
        "data": [{"embedding": [0.3, 0.4], "index": 1}, {"embedding": [0.1, 0.2], "index": 0}],
        "model": "emb-1",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    script = Script(httpx.Response(200, json=body))
    result = run(make(script).embed(["a", "b"], model="emb", idempotency_key="k"))
    assert isinstance(result, EmbeddingResult)
    assert result.vectors == [[0.1, 0.2], [0.3, 0.4]] and result.model == "emb-1"
    assert result.usage == {"prompt_tokens": 4, "total_tokens": 4}
    request = script.requests[0]
    assert request.url.path == "/v1/embeddings" and request.headers["Idempotency-Key"] == "k"
    assert json.loads(request.content) == {"model": "emb", "input": ["a", "b"]}


def test_embed_without_usage_gives_none() -> None:
    script = Script(
        httpx.Response(200, json={"data": [{"embedding": [1.0], "index": 0}], "model": "e"})
    )
    assert run(make(script).embed(["a"], model="e")).usage is None


def test_embed_with_a_missing_vector_is_an_unexpected_response() -> None:
    script = Script(
        httpx.Response(200, json={"data": [{"embedding": [1.0], "index": 0}], "model": "e"})
    )
    with pytest.raises(UnexpectedResponse):
        run(make(script).embed(["a", "b"], model="e"))


def test_a_base_url_without_v1_works_the_same() -> None:
    script = Script(httpx.Response(200, json=completion()))
    client = ModelClient("https://llm.example.com", KEY, transport=script.transport())
    run(client.chat([], model="m"))
    assert str(script.requests[0].url) == "https://llm.example.com/v1/chat/completions"
