"""The aggregated view of a batch: counts, a computed state, progress, success rate, ETA.

Seed 000 ("each item is independent, batches are just bookkeeping") shows people a batch as
"35 of 50 done, 2 failed, 74.0 %". That view is computed on demand from the items' own
states instead of being stored, so it can never disagree with them; this module is the one
place that computes it, for every family (the Dagster metadata, the CLI and the UI agree).

Choices made here, beyond the seed:

* Percentages are rounded half-up to one decimal from exact decimal arithmetic, so the same
  counts always print the same number (``round()`` on floats rounds 0.25 down to 0.2).
* A percentage never *displays* 100.0 when it is not exactly 100 %: ``progress_percent``
  is capped at 99.9 while something is unsettled and ``success_rate`` at 99.9 while any
  item failed (1999 of 2000 would otherwise round to a misleading 100.0). Likewise a
  non-zero fraction never shows as 0.0: it is raised to 0.1.
* An empty batch is ``completed`` with progress 100.0 (there is nothing left to do) and a
  success rate of 0.0 (nothing succeeded; the rate is only meaningful with settled items).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any


class ItemState(StrEnum):
    """Where one independent item (a role, a document, a request) is in its life."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class ViewState(StrEnum):
    """The batch-level state people see; computed from counts, never stored."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    PARTIAL = "partial"


@dataclass(frozen=True)
class AggregatedView:
    """Counts and derived figures of one batch at one moment."""

    total: int
    queued: int
    in_progress: int
    completed: int
    failed: int
    state: ViewState
    progress_percent: float
    success_rate: float
    eta_seconds: float | None

    @property
    def settled(self) -> int:
        """Items that reached an end (completed or failed)."""
        return self.completed + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "queued": self.queued,
            "in_progress": self.in_progress,
            "completed": self.completed,
            "failed": self.failed,
            "state": str(self.state),
            "progress_percent": self.progress_percent,
            "success_rate": self.success_rate,
            "eta_seconds": self.eta_seconds,
        }


_ONE_DECIMAL = Decimal("0.1")


def _percent(part: int, whole: int) -> float:
    """``part / whole * 100`` rounded half-up to one decimal, never falsely 0.0 or 100.0."""
    if whole <= 0 or part <= 0:
        return 0.0
    if part >= whole:
        return 100.0
    value = (Decimal(part) * 100 / Decimal(whole)).quantize(_ONE_DECIMAL, rounding=ROUND_HALF_UP)
    # Clamp so that "almost" stays visibly "almost" (see the module docstring).
    return float(min(max(value, _ONE_DECIMAL), Decimal("99.9")))


def _coerce_state(value: ItemState | str) -> ItemState:
    if isinstance(value, ItemState):
        return value
    try:
        return ItemState(str(value).strip().lower())
    except ValueError:
        known = ", ".join(s.value for s in ItemState)
        raise ValueError(f"unknown item state {value!r} (expected one of: {known})") from None


def aggregate(
    states: Iterable[ItemState | str],
    *,
    durations_seconds: Sequence[float] = (),
    concurrency: int = 1,
) -> AggregatedView:
    """Aggregate item states into the batch view of seed 000.

    ``state`` is:

    * ``pending`` when there are items and every one is still queued;
    * ``completed`` when nothing is queued or running and nothing failed (also for an
      empty batch);
    * ``partial`` when nothing is queued or running and at least one item failed;
    * ``in_progress`` otherwise (something runs, or some settled while others wait).

    ``progress_percent`` is settled / total, ``success_rate`` is completed / settled (0.0
    when nothing settled). ``durations_seconds`` are observed durations of settled items
    and ``concurrency`` the number of items worked on at once; they feed
    :func:`estimate_eta_seconds`.
    """
    counts: dict[ItemState, int] = dict.fromkeys(ItemState, 0)
    for raw in states:
        counts[_coerce_state(raw)] += 1
    return aggregate_counts(counts, durations_seconds=durations_seconds, concurrency=concurrency)


def aggregate_counts(
    counts: Mapping[ItemState | str, int],
    *,
    durations_seconds: Sequence[float] = (),
    concurrency: int = 1,
) -> AggregatedView:
    """:func:`aggregate` from the number of items in each state, for callers that already
    count them in the database (a batch of 10,000 items need not become a list)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    by_state: dict[ItemState, int] = dict.fromkeys(ItemState, 0)
    for raw, n in counts.items():
        if n < 0:
            raise ValueError(f"a count cannot be negative, got {n} for {raw!r}")
        by_state[_coerce_state(raw)] += n

    queued = by_state[ItemState.QUEUED]
    in_progress = by_state[ItemState.IN_PROGRESS]
    completed = by_state[ItemState.COMPLETED]
    failed = by_state[ItemState.FAILED]
    total = queued + in_progress + completed + failed
    settled = completed + failed

    if total == 0:
        return AggregatedView(
            total=0,
            queued=0,
            in_progress=0,
            completed=0,
            failed=0,
            state=ViewState.COMPLETED,
            progress_percent=100.0,
            success_rate=0.0,
            eta_seconds=0.0,
        )

    if queued == total:
        state = ViewState.PENDING
    elif queued + in_progress == 0:
        state = ViewState.PARTIAL if failed else ViewState.COMPLETED
    else:
        state = ViewState.IN_PROGRESS

    return AggregatedView(
        total=total,
        queued=queued,
        in_progress=in_progress,
        completed=completed,
        failed=failed,
        state=state,
        progress_percent=_percent(settled, total),
        success_rate=_percent(completed, settled),
        eta_seconds=estimate_eta_seconds(
            durations_seconds, remaining=queued, concurrency=concurrency, in_progress=in_progress
        ),
    )


def estimate_eta_seconds(
    durations_seconds: Sequence[float],
    remaining: int,
    concurrency: int,
    in_progress: int = 0,
) -> float | None:
    """Estimate the seconds until every remaining and in-flight item has settled.

    Why this model: items are independent and the only throttle is the number of workers
    (seed 000: "worker concurrency = natural throttle"), so the batch drains in waves of
    ``concurrency`` items each taking about the mean observed duration ``d``.

    Rule (deterministic list scheduling of equal-length items):

    * an in-flight item is assumed half done, so it frees its worker after ``d / 2``;
      in-flight items beyond ``concurrency`` (the limit was lowered) are treated the same;
    * ``remaining`` queued items are handed, in order, to the worker that frees first:
      first the idle workers (free now), then those finishing in-flight items;
    * the answer is when the last worker is done.

    So with nothing in flight it is ``ceil(remaining / concurrency) * d`` (50 items, 5
    workers, 15 min each -> 2.5 h, as in the seed's table); a last wave that spills onto
    workers still busy with in-flight items adds ``d / 2``.

    Returns 0.0 when nothing is left (known without any observation) and None when work is
    left but no duration has been observed yet (no honest estimate exists).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if remaining < 0 or in_progress < 0:
        raise ValueError("remaining and in_progress cannot be negative")
    if remaining == 0 and in_progress == 0:
        return 0.0
    if not durations_seconds:
        return None
    if any(d < 0 or math.isnan(d) for d in durations_seconds):
        raise ValueError("durations cannot be negative or NaN")

    mean = math.fsum(durations_seconds) / len(durations_seconds)
    half = mean / 2
    if remaining == 0:
        return half

    busy = min(in_progress, concurrency)  # workers that free up at d/2
    idle = concurrency - busy  # workers that are free now
    # Queued item i goes to worker i % concurrency in round i // concurrency; the idle
    # workers come first in every round because their free time stays d/2 earlier.
    last_round, last_slot = divmod(remaining - 1, concurrency)
    eta = (last_round + 1) * mean
    if last_slot >= idle:
        eta += half
    return eta
