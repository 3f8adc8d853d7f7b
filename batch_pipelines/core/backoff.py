"""Retry and polling delays, as pure functions.

Every client and the engine wait the same way, so that one policy (and one set of tests)
decides how hard the project leans on a service that is failing or slow. Nothing here sleeps
or reads a clock on its own: callers pass randomness and "now" in, which keeps the maths
testable and deterministic.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from batch_pipelines.core.errors import ConfigurationError

# 2**63 half-seconds is already ~146 billion years: larger exponents only risk overflow.
_MAX_EXPONENT = 63


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    The defaults follow what public Risk Modeler clients do (five retries, backoff factor
    0.5) and what the OpenAI SDK does with ``Retry-After`` (trusted up to two minutes): the
    service is the best judge of when it can take the request again, up to a point where
    waiting any longer would look like a hang.
    """

    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_after_max_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("backoff_base_seconds", "backoff_max_seconds", "retry_after_max_seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number >= 0, got {value}")


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    A ``retry_after`` the server sent within ``[0, policy.retry_after_max_seconds]`` is
    obeyed exactly: retrying earlier just earns another 429. A negative value (an HTTP-date
    already in the past) means "now". A value above the maximum is treated as noise and
    ignored, as the OpenAI SDK does, so a misconfigured server cannot park a batch for hours.

    Otherwise "full jitter": uniform in ``[0, min(max, base * 2**attempt)]``. Spreading the
    retries of many concurrent jobs over the whole window is what keeps a batch of thousands
    from hammering a recovering service in lock-step.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if (
        retry_after is not None
        and math.isfinite(retry_after)
        and retry_after <= policy.retry_after_max_seconds
    ):
        return max(retry_after, 0.0)
    cap = min(
        policy.backoff_max_seconds,
        policy.backoff_base_seconds * 2 ** min(attempt, _MAX_EXPONENT),
    )
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Read how long the server asked us to wait, in seconds, or None when it did not say.

    ``retry-after-ms`` (OpenAI's finer-grained header) wins over ``retry-after``, which may
    be either delta-seconds or an HTTP-date. The result may be negative for a date in the
    past; ``backoff_delay`` turns that into "retry now". Header names are matched without
    regard to case, whatever the mapping type, because plain dicts in tests and fakes are
    case-sensitive while HTTP is not.
    """
    lowered = {str(k).lower(): v for k, v in headers.items()}

    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        ms = _parse_float(raw_ms)
        if ms is not None:
            return ms / 1000.0

    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _parse_float(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None on garbage
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return (when - reference).total_seconds()


def _parse_float(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def poll_interval(unchanged_polls: int, base: float, maximum: float) -> float:
    """Seconds until the next status poll of something that is still running.

    Workflows on the Risk Modeler run from seconds to hours, and the service has no
    callbacks. Polling fast while things move and doubling the wait each time nothing
    changed (capped at ``maximum``) keeps short jobs responsive without spending the rate
    limit on long ones. Reset ``unchanged_polls`` to 0 whenever the status or progress moves.
    """
    if unchanged_polls < 0:
        raise ValueError(f"unchanged_polls must be >= 0, got {unchanged_polls}")
    if base < 0 or maximum < 0:
        raise ValueError(f"base and maximum must be >= 0, got {base} and {maximum}")
    return min(maximum, base * 2 ** min(unchanged_polls, _MAX_EXPONENT))
