"""A document job's cost budget as a hard bound: every call reserves its worst case first.

Before a model call is sent, the most it can cost is reserved: its prompt at one token per
UTF-8 byte (a byte-level BPE token is at least one byte, so no tokenizer counts more) at the
model's input price, plus ``max_tokens`` - which the call sends, so the service stops there -
at its output price. A call whose worst case does not fit in the budget minus what is spent
and reserved waits for the calls in flight (they usually cost far less than reserved); when
nothing is in flight and it still does not fit, the job stops for its budget. So what is
spent never passes the budget, whatever the concurrency. The price of that bound: a job
pauses while its remaining budget is below one call's worst case, a little before the
money is truly gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from batch_pipelines.core.costs import COST_QUANTUM, ModelPrice
from batch_pipelines.core.errors import BatchPipelinesError

# Tokens a chat format adds around each message and the whole request (OpenAI: 3-4 each).
MESSAGE_OVERHEAD_TOKENS = 8
# The output a work call may produce: room for twice the tokens of its input (a tagged or
# translated text is longer than its source), at least MIN_OUTPUT_TOKENS, at most the cap.
MIN_OUTPUT_TOKENS = 256
MAX_OUTPUT_TOKENS = 16_384
# A validator answers {"score": N, "reason": "<one sentence>"}.
VALIDATION_MAX_TOKENS = 120


class BudgetReached(BatchPipelinesError):
    """The next call's worst case does not fit in what is left of the job's budget."""

    code = "BP-DOC-BUDGET"


def prompt_token_bound(messages: Sequence[Mapping[str, Any]] | str) -> int:
    """At most how many tokens a prompt is: its UTF-8 bytes plus the chat format's overhead."""
    if isinstance(messages, str):
        return len(messages.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS
    return MESSAGE_OVERHEAD_TOKENS + sum(
        len(str(m.get("content") or "").encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )


def output_token_limit(content: str) -> int:
    """The ``max_tokens`` of a work call on ``content`` (about four characters a token, so
    half the characters is twice the tokens)."""
    return max(MIN_OUTPUT_TOKENS, min(MAX_OUTPUT_TOKENS, MIN_OUTPUT_TOKENS + len(content) // 2))


def worst_case_cost(prompt_tokens: int, max_tokens: int, price: ModelPrice) -> Decimal:
    """The most a call can cost, rounded up to the ledger's quantum."""
    raw = (
        Decimal(prompt_tokens) * price.input_per_1k + Decimal(max_tokens) * price.output_per_1k
    ) / 1000
    return raw.quantize(COST_QUANTUM, rounding=ROUND_CEILING)


class CostGuard:
    """Spent and reserved money of one job's run; ``limit`` None means no budget."""

    def __init__(self, limit: Decimal | None, spent: Decimal = Decimal(0)) -> None:
        self.limit = limit
        self.spent = spent
        self.reserved = Decimal(0)
        self._in_flight = 0
        self._released = asyncio.Event()

    async def reserve(self, amount: Decimal) -> None:
        """Reserve ``amount`` for a call about to be sent, waiting for calls in flight when
        it does not fit yet; ``BudgetReached`` when it cannot fit at all."""
        if self.limit is None:
            self._in_flight += 1
            return
        while self.spent + self.reserved + amount > self.limit:
            if not self._in_flight:
                raise BudgetReached(
                    f"the next call may cost up to {amount}; {self.limit - self.spent} of the "
                    f"budget {self.limit} is left",
                    details={"budget": str(self.limit), "spent": str(self.spent)},
                )
            self._released.clear()
            await self._released.wait()
        self.reserved += amount
        self._in_flight += 1

    def settle(self, reserved: Decimal, cost: Decimal) -> None:
        """A reserved call answered (``cost`` billed) or failed (``cost`` 0)."""
        self._in_flight -= 1
        if self.limit is not None:
            self.reserved -= reserved
        self.spent += cost
        self._released.set()

    def add_spent(self, cost: Decimal) -> None:
        """Cost of a call that reserved nothing (there was no way to price it beforehand)."""
        self.spent += cost
