"""Bounded concurrency for the families' own fan-outs (no I/O here; the callers bring it).

The engine drives jobs with its own claim-fed workers. Everything else that fans out calls
(a phase's items, a configured job's requests, a cycle's EDM listings) goes through these
two functions, so that the rules are one: at most ``limit`` calls in flight, each item
taken once, the first failure cancels the rest and propagates.

Workers pull from one shared iterator instead of one task per item behind a semaphore: a
batch of 100,000 requests then costs ``limit`` tasks, not 100,000, and a freed slot takes
its next item at once instead of waiting for the event loop to hand the semaphore over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def drain(
    fn: Callable[[T], Awaitable[object]],
    items: Iterable[T],
    limit: int,
    *,
    until: Callable[[], bool] | None = None,
) -> None:
    """Await ``fn(item)`` for each item, at most ``limit`` at once. Once ``until()`` is true
    no new item is started (those in flight finish)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending = iter(items)

    async def worker() -> None:
        while until is None or not until():
            try:
                item = next(pending)
            except StopIteration:
                return
            await fn(item)

    workers = limit if not isinstance(items, Sequence) else min(limit, len(items))
    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """``[await fn(item) for item in items]`` with at most ``limit`` calls at once; results
    in the order of ``items``."""
    results: list[R] = [None] * len(items)  # type: ignore[list-item] - every slot is filled

    async def one(indexed: tuple[int, T]) -> None:
        index, item = indexed
        results[index] = await fn(item)

    await drain(one, list(enumerate(items)), limit)
    return results
