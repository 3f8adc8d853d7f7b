"""Bounded fan-out: never more than the limit in flight, every item once, results in order,
the first failure stops the rest."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.concurrency import drain, map_bounded


class _Gauge:
    """Counts calls in flight; each call yields to the loop a chosen number of times, so
    calls overlap and finish out of order."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.seen: list[int] = []

    async def call(self, item: tuple[int, int]) -> int:
        value, turns = item
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.seen.append(value)
        for _ in range(turns):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return value * 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(), st.integers(min_value=0, max_value=5)), max_size=60),
    st.integers(1, 12),
)
def test_map_bounded_keeps_the_order_calls_each_item_once_and_never_exceeds_the_limit(items, limit):
    gauge = _Gauge()
    results = asyncio.run(map_bounded(gauge.call, items, limit))
    assert results == [value * 2 for value, _ in items]
    assert sorted(gauge.seen) == sorted(value for value, _ in items)
    assert gauge.peak <= limit


def test_the_limit_is_reached_when_there_is_enough_work():
    gauge = _Gauge()
    asyncio.run(map_bounded(gauge.call, [(i, 3) for i in range(40)], 7))
    assert gauge.peak == 7


def test_the_first_failure_cancels_the_calls_in_flight_and_propagates():
    cancelled: list[int] = []
    started: list[int] = []

    async def call(item: int) -> int:
        started.append(item)
        if item == 3:
            raise RuntimeError("item 3 broke")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    async def main() -> None:
        await map_bounded(call, list(range(100)), 5)

    with pytest.raises(RuntimeError, match="item 3 broke"):
        asyncio.run(main())
    assert sorted(cancelled) == [0, 1, 2, 4]  # the other four in flight
    assert max(started) < 10  # nothing much was started after the failure


def test_drain_starts_nothing_new_once_told_to_stop():
    done: list[int] = []

    async def call(item: int) -> None:
        await asyncio.sleep(0)
        done.append(item)

    asyncio.run(drain(call, range(1000), 4, until=lambda: len(done) >= 10))
    assert 10 <= len(done) <= 10 + 4  # those in flight when it stopped still finish


def test_drain_takes_an_unsized_iterable_and_a_limit_below_one_is_refused():
    seen: list[int] = []

    async def call(item: int) -> None:
        seen.append(item)

    asyncio.run(drain(call, (i for i in range(25)), 3))
    assert sorted(seen) == list(range(25))
    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(drain(call, [1], 0))
