"""Client of OpenAI-compatible model APIs (chat completions and embeddings).

Document AI pipelines send each item through up to ten phases of model calls; what they
need back is the content, the token usage (for the cost ledger) and the latency (for ETAs),
not the whole SDK object model. Usage can be missing from compatible servers: it is then
None, and the ledger records "unknown" rather than a made-up zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from batch_pipelines.clients.http import ServiceClient, UnexpectedResponse

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class ChatResult:
    """One chat completion. ``latency_seconds`` covers the whole call including retries:
    that is the time the item actually waited."""

    content: str
    model: str
    usage: dict[str, Any] | None
    response_id: str
    latency_seconds: float
    finish_reason: str | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings in the order of the input texts."""

    vectors: list[list[float]]
    model: str
    usage: dict[str, Any] | None
    latency_seconds: float


class ModelClient(ServiceClient):
    """Async client of an OpenAI-compatible API.

    ``base_url`` is the host (``https://api.openai.com``); a base ending in ``/v1``, as the
    OpenAI SDK writes it, is accepted too.
    """

    def __init__(self, base_url: str, api_key: str | None, **kwargs: Any):
        kwargs.setdefault("service_name", "models")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        super().__init__(base, api_key, **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.reveal()}"} if self._api_key else {}

    def _idempotency(self, key: str | None) -> tuple[str, str] | None:
        return (IDEMPOTENCY_HEADER, key) if key else None

    def _malformed(self, path: str, what: str) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"{self.service_name} POST {path} answered without {what}", service=self.service_name
        )

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        idempotency_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        path = "/v1/chat/completions"
        payload: dict[str, Any] = {"model": model, "messages": messages}
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        started = time.perf_counter()
        body = await self.request_json(
            "POST",
            path,
            json=payload,
            idempotency_header=self._idempotency(idempotency_key),
            expected=(200,),
        )
        latency = time.perf_counter() - started
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._malformed(path, "choices[0].message") from None
        return ChatResult(
            # A refusal or a tool call may come with null content: an empty string keeps the
            # type simple and is what downstream parsing treats as "no answer".
            content=content if isinstance(content, str) else "",
            model=str(body.get("model") or model),
            usage=_usage(body),
            response_id=str(body.get("id") or ""),
            latency_seconds=latency,
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
        )

    async def embed(
        self, texts: list[str], *, model: str, idempotency_key: str | None = None
    ) -> EmbeddingResult:
        path = "/v1/embeddings"
        started = time.perf_counter()
        body = await self.request_json(
            "POST",
            path,
            json={"model": model, "input": texts},
            idempotency_header=self._idempotency(idempotency_key),
            expected=(200,),
        )
        latency = time.perf_counter() - started
        try:
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (KeyError, TypeError, AttributeError, ValueError):
            raise self._malformed(path, "data[].embedding") from None
        if len(vectors) != len(texts):
            raise self._malformed(
                path, f"one embedding per input ({len(vectors)} for {len(texts)})"
            )
        return EmbeddingResult(
            vectors=vectors,
            model=str(body.get("model") or model),
            usage=_usage(body),
            latency_seconds=latency,
        )


def _usage(body: Any) -> dict[str, Any] | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else None
