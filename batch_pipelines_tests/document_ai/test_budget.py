"""The worst-case reservation behind a document job's hard budget."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from batch_pipelines.core.costs import DEFAULT_PRICES, Usage, cost_of
from batch_pipelines.document_ai.budget import (
    BudgetReached,
    CostGuard,
    output_token_limit,
    prompt_token_bound,
    worst_case_cost,
)


def test_a_calls_worst_case_covers_any_usage_within_its_bounds():
    price = DEFAULT_PRICES.price_for("sim-large")
    messages = [{"role": "system", "content": "Summarize."}, {"role": "user", "content": "é" * 50}]
    bound = prompt_token_bound(messages)
    assert bound >= 100 + len("Summarize.")  # one token per byte at most
    worst = worst_case_cost(bound, 300, price)
    assert worst >= cost_of(Usage(bound, 300), price)
    assert output_token_limit("x" * 10) == 256 + 5 and output_token_limit("x" * 10**6) == 16_384


def test_a_reservation_that_cannot_fit_with_nothing_in_flight_stops_and_one_that_can_waits():
    async def go():
        guard = CostGuard(Decimal("1.00"), spent=Decimal("0.50"))
        await guard.reserve(Decimal("0.40"))
        waiting = asyncio.create_task(guard.reserve(Decimal("0.30")))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # 0.50 + 0.40 + 0.30 > 1.00: waits for the call in flight
        guard.settle(Decimal("0.40"), Decimal("0.05"))
        await waiting  # 0.55 + 0.30 fits
        guard.settle(Decimal("0.30"), Decimal("0.10"))
        with pytest.raises(BudgetReached, match="may cost up to 0.5"):
            await guard.reserve(Decimal("0.50"))  # 0.65 + 0.50 > 1.00, nothing in flight
        assert guard.spent == Decimal("0.65") and guard.reserved == 0

    asyncio.run(go())
