"""Retry and poll delays (pure functions)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from batch_pipelines.core.backoff import (
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    poll_interval,
)
from batch_pipelines.core.errors import ConfigurationError


class MaxRng(random.Random):
    """Always picks the top of the range, to see the cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_the_default_policy_matches_public_risk_modeler_clients() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff_base_seconds) == (5, 0.5)
    assert (policy.backoff_max_seconds, policy.retry_after_max_seconds) == (30.0, 120.0)


def test_a_retry_policy_cannot_be_changed_after_creation() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().max_retries = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"backoff_base_seconds": -0.1}, {"backoff_max_seconds": float("inf")}],
)
def test_a_retry_policy_rejects_negative_or_infinite_values(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)


def test_the_jitter_window_doubles_per_attempt_up_to_the_maximum() -> None:
    policy = RetryPolicy(backoff_base_seconds=0.5, backoff_max_seconds=30.0)
    tops = [backoff_delay(a, policy, rng=MaxRng()) for a in range(10)]
    assert tops == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_full_jitter_spreads_delays_over_the_whole_window() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, RetryPolicy(), rng=rng) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.2 and max(delays) > 3.8


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert backoff_delay(10_000, RetryPolicy(), rng=MaxRng()) == 30.0


def test_a_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, RetryPolicy())


def test_a_retry_after_within_the_maximum_is_waited_exactly_even_if_longer_than_backoff() -> None:
    assert backoff_delay(0, RetryPolicy(), retry_after=7.0, rng=MaxRng()) == 7.0
    assert backoff_delay(0, RetryPolicy(), retry_after=120.0, rng=MaxRng()) == 120.0


def test_a_retry_after_in_the_past_means_retry_now() -> None:
    assert backoff_delay(4, RetryPolicy(), retry_after=-3.0, rng=MaxRng()) == 0.0


def test_a_retry_after_above_the_maximum_falls_back_to_jittered_backoff() -> None:
    assert backoff_delay(1, RetryPolicy(), retry_after=3600.0, rng=MaxRng()) == 1.0


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5


def test_retry_after_header_names_are_matched_without_regard_to_case() -> None:
    assert parse_retry_after({"Retry-After": "4"}) == 4.0
    assert parse_retry_after({"RETRY-AFTER-MS": "250"}) == 0.25


def test_retry_after_may_be_an_http_date() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=now) == 30.0


def test_an_http_date_in_the_past_gives_a_negative_wait() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=now) == -5.0


@pytest.mark.parametrize("value", ["soon", "", "nan", "inf"])
def test_an_unreadable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None


def test_an_unreadable_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0


def test_no_retry_after_header_gives_none() -> None:
    assert parse_retry_after({"content-type": "application/json"}) is None


def test_the_poll_interval_doubles_while_nothing_changes_and_is_capped() -> None:
    assert [poll_interval(n, 2.0, 60.0) for n in range(7)] == [
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
    ]
    assert poll_interval(10_000, 2.0, 60.0) == 60.0


def test_the_poll_interval_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError):
        poll_interval(-1, 1.0, 10.0)
    with pytest.raises(ValueError):
        poll_interval(0, -1.0, 10.0)
