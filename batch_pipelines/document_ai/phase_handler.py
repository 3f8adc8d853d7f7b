"""One item through one phase of a document pipeline: model call, validation, cost.

No call is ever billed twice. Every call sends an idempotency key derived from the item's
request id (``doc-<batch>-<item>-<phase>``) and the attempt (``{request_id}:call:{n}`` for
the work, ``{request_id}:validation:{n}`` for scoring it), so a resumed run that redoes the
item gets replays from the service; the ledger entries use the same keys as ``call_key``,
so recording them again adds nothing. Entries are appended to the caller's ``spent`` list
as each call is billed, so a caller still has them when a later call of the item fails.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.core.costs import (
    DEFAULT_PRICES,
    CostEntry,
    CostKind,
    PriceTable,
    Usage,
    reported_or_estimated_usage,
)
from batch_pipelines.document_ai.budget import (
    VALIDATION_MAX_TOKENS,
    CostGuard,
    output_token_limit,
    prompt_token_bound,
    worst_case_cost,
)
from batch_pipelines.document_ai.prompts import build_messages, parse_score, validation_messages
from batch_pipelines.document_ai.router import DEFAULT_VALIDATOR_MODEL

__all__ = ["EMBEDDING_TASK", "ItemOutcome", "PhaseHandler", "call_key"]

EMBEDDING_TASK = "embedding_generation"


def call_key(request_id: str, kind: Literal["call", "validation"], attempt: int) -> str:
    """The idempotency key (and ledger ``call_key``) of one call of a job."""
    return f"{request_id}:{kind}:{attempt}"


def _text_of(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


@dataclass(frozen=True)
class ItemOutcome:
    """What one item's phase produced; ``ok`` is False when validation never passed."""

    item_id: int
    ok: bool
    output: Any
    score: int | None
    attempts: int
    entries: tuple[CostEntry, ...]
    error: str | None
    latency_seconds: float

    @property
    def cost(self) -> Decimal:
        return sum((e.cost for e in self.entries), Decimal(0))

    @property
    def tokens(self) -> int:
        return sum(e.usage.prompt_tokens + e.usage.completion_tokens for e in self.entries)


class PhaseHandler:
    """Runs one phase of a document pipeline on one item at a time (the runner calls it
    with the job's concurrency)."""

    def __init__(
        self,
        client: ModelClient,
        *,
        phase_name: str,
        task_type: str,
        model: str,
        prices: PriceTable = DEFAULT_PRICES,
        validation_enabled: bool = False,
        min_score: int = 7,
        max_validation_attempts: int = 3,
        validator_model: str = DEFAULT_VALIDATOR_MODEL,
        guard: CostGuard | None = None,
    ) -> None:
        if not 1 <= min_score <= 10:
            raise ValueError(f"min_score must be between 1 and 10, got {min_score}")
        if max_validation_attempts < 1:
            raise ValueError(f"max_validation_attempts must be >= 1, got {max_validation_attempts}")
        self.client = client
        self.phase_name = phase_name
        self.task_type = str(task_type)
        self.model = model
        self.prices = prices
        self.is_embedding = self.task_type == EMBEDDING_TASK
        # Vectors are not judged by a validator.
        self.validation_enabled = validation_enabled and not self.is_embedding
        self.min_score = min_score
        self.max_validation_attempts = max_validation_attempts
        self.validator_model = validator_model
        # Reserves each call's worst case against the job's budget before it is sent.
        self.guard = guard or CostGuard(None)
        # An unpriced model is a configuration error: fail now, not after the first call.
        prices.price_for(model)
        if self.validation_enabled:
            prices.price_for(validator_model)

    async def run_item(
        self,
        *,
        item_id: int,
        content: Any,
        request_id: str,
        batch_id: int,
        passages: Sequence[str] = (),
        target_language: str | None = None,
        spent: list[CostEntry] | None = None,
    ) -> ItemOutcome:
        """One item through this phase: the call, validation and its retries, the cost.

        Each billed call's ledger entry is appended to ``spent`` (when given) as soon as the
        call answers, so that when a later call raises, the caller still knows what the
        item cost so far; the outcome carries the same entries.
        """
        if not isinstance(content, str):
            raise ValueError(f"item {item_id}: content must be a string")
        entries: list[CostEntry] = spent if spent is not None else []
        cfg = {"passages": list(passages), "target_language": target_language}
        started = time.perf_counter()
        output, score, attempts = await self._process(
            request_id, cfg, content, item_id, batch_id, entries
        )
        error = None
        if self.validation_enabled and (score is None or score < self.min_score):
            shown = "unavailable" if score is None else str(score)
            error = f"validation score {shown} below minimum {self.min_score}"
        return ItemOutcome(
            item_id=item_id,
            ok=error is None,
            output=output,
            score=score,
            attempts=attempts,
            entries=tuple(entries),
            error=error,
            latency_seconds=time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ the work

    async def _process(
        self,
        request_id: str,
        cfg: Mapping[str, Any],
        content: str,
        item_id: int,
        batch_id: int,
        entries: list[CostEntry],
    ) -> tuple[Any, int | None, int]:
        def entry(key: str, model: str, usage: Usage, kind: CostKind) -> CostEntry:
            return CostEntry.priced(
                call_key=key,
                batch_id=batch_id,
                model=model,
                usage=usage,
                prices=self.prices,
                phase=self.phase_name,
                item_id=str(item_id),
                kind=kind,
            )

        async def call(key: str, model: str, kind: CostKind, send, prompt: Any, max_tokens: int):
            """Reserve the call's worst case, send it, then settle on its real cost."""
            reserved = worst_case_cost(
                prompt_token_bound(prompt), max_tokens, self.prices.price_for(model)
            )
            await self.guard.reserve(reserved)
            cost = Decimal(0)
            try:
                result = await send()
                text = getattr(result, "content", "")
                usage = reported_or_estimated_usage(
                    result.usage, prompt if isinstance(prompt, str) else _text_of(prompt), text
                )
                billed = entry(key, model, usage, kind)
                entries.append(billed)
                cost = billed.cost
                return result
            finally:
                self.guard.settle(reserved, cost)

        if self.is_embedding:
            key = call_key(request_id, "call", 1)
            result = await call(
                key,
                self.model,
                "call",
                lambda: self.client.embed([content], model=self.model, idempotency_key=key),
                content,
                0,
            )
            return result.vectors[0], None, 1

        messages = build_messages(
            self.task_type,
            content,
            passages=cfg.get("passages") or (),
            target_language=cfg.get("target_language"),
        )
        limit = output_token_limit(content)
        attempts = self.max_validation_attempts if self.validation_enabled else 1
        output = ""
        score: int | None = None
        for attempt in range(1, attempts + 1):
            key = call_key(request_id, "call", attempt)
            chat = await call(
                key,
                self.model,
                "call" if attempt == 1 else "retry",
                lambda key=key: self.client.chat(
                    messages, model=self.model, idempotency_key=key, max_tokens=limit
                ),
                messages,
                limit,
            )
            output = chat.content
            if not self.validation_enabled:
                return output, None, attempt
            check = validation_messages(self.task_type, content, output)
            vkey = call_key(request_id, "validation", attempt)
            verdict = await call(
                vkey,
                self.validator_model,
                "validation",
                lambda check=check, vkey=vkey: self.client.chat(
                    check,
                    model=self.validator_model,
                    idempotency_key=vkey,
                    max_tokens=VALIDATION_MAX_TOKENS,
                ),
                check,
                VALIDATION_MAX_TOKENS,
            )
            score = parse_score(verdict.content)
            if score is not None and score >= self.min_score:
                return output, score, attempt
        return output, score, attempts
