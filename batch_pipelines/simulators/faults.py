"""Reproducible fault injection shared by every simulator.

The outside services fail in a few distinct ways and each one stresses a different part of
the engine: a 5xx or 429 must be retried (nothing happened on the server), a slow answer
after acceptance must be *replayed* by idempotency key (something did happen), and a
workflow that ends FAILED must be settled as a failure rather than retried blindly. One
plan describes all of them; decisions come from a seeded ``random.Random`` so that a failing
run can be reproduced exactly by re-running it with the same seed and request order.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from batch_pipelines.core.errors import ConfigurationError

# The 5xx answers a gateway in front of the real services produces; all are retryable.
SERVER_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True)
class FaultPlan:
    """What to inject and how often. Rates are probabilities per request (0..1)."""

    seed: int = 0
    latency_seconds: float = 0.0
    server_error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_seconds: float = 1.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    workflow_failure_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("server_error_rate", "rate_limit_rate", "slow_rate", "workflow_failure_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"fault plan: {name} must be between 0 and 1, got {value}")
        if self.server_error_rate + self.rate_limit_rate > 1.0:
            raise ConfigurationError(
                "fault plan: server_error_rate + rate_limit_rate must not exceed 1 "
                "(both are drawn from the same roll)"
            )
        for name in ("latency_seconds", "retry_after_seconds", "slow_seconds"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"fault plan: {name} must not be negative")

    # Environment names, so a simulator started by `make demo` or a container can be tuned
    # without code. Latency is also accepted in milliseconds because that is how people
    # think about it.
    ENV_PREFIX = "SIM_"

    @classmethod
    def from_env_mapping(cls, env: Mapping[str, str], *, prefix: str = ENV_PREFIX) -> FaultPlan:
        """Build a plan from ``SIM_*`` variables (e.g. ``os.environ``); unknown keys are ignored.

        Recognised: SIM_SEED, SIM_LATENCY_SECONDS or SIM_LATENCY_MS, SIM_SERVER_ERROR_RATE,
        SIM_RATE_LIMIT_RATE, SIM_RETRY_AFTER_SECONDS, SIM_SLOW_RATE, SIM_SLOW_SECONDS,
        SIM_WORKFLOW_FAILURE_RATE. A value that does not parse raises ConfigurationError
        instead of silently running without the fault someone asked for.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(prefix + f.name.upper())
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(
                    prefix + f.name.upper(), raw, int if f.name == "seed" else float
                )
        ms = env.get(prefix + "LATENCY_MS")
        if ms is not None and ms.strip() != "" and "latency_seconds" not in values:
            values["latency_seconds"] = _parse(prefix + "LATENCY_MS", ms, float) / 1000.0
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> FaultPlan:
        """Copy with the given fields replaced; ``None`` means "keep" (handy for CLI flags)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the injector decided for one request, before the simulator does anything."""

    error_status: int | None = None  # 500/502/503 or 429; answered before acceptance
    slow: bool = False  # accept, persist, then delay the answer

    @property
    def kind(self) -> str | None:
        if self.error_status == 429:
            return "rate_limited"
        if self.error_status is not None:
            return f"server_error_{self.error_status}"
        return None


_NO_FAULT = Decision()


class FaultInjector:
    """Draws a Decision per request from the plan's seeded generator and counts injections.

    A rate of zero draws nothing, so a plan without faults costs a couple of comparisons
    per request (the benchmark path) and enabling one fault kind does not consume draws
    for the kinds that stay off.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._rng = random.Random(self.plan.seed)
        self.counts: Counter[str] = Counter()
        self._error_threshold = self.plan.server_error_rate + self.plan.rate_limit_rate

    def decide(self, *, may_be_slow: bool = False) -> Decision:
        plan = self.plan
        if self._error_threshold > 0.0:
            roll = self._rng.random()
            if roll < plan.server_error_rate:
                return Decision(error_status=self._rng.choice(SERVER_ERROR_STATUSES))
            if roll < self._error_threshold:
                return Decision(error_status=429)
        if may_be_slow and plan.slow_rate > 0.0 and self._rng.random() < plan.slow_rate:
            return Decision(slow=True)
        return _NO_FAULT

    def chance(self, rate: float) -> bool:
        """A seeded yes/no for simulator-specific draws (workflow failure, omitted usage)."""
        return rate > 0.0 and (rate >= 1.0 or self._rng.random() < rate)

    def workflow_fails(self) -> bool:
        return self.chance(self.plan.workflow_failure_rate)

    def record(self, kind: str) -> None:
        self.counts[kind] += 1

    async def delay(self, since: float | None = None) -> None:
        """The plan's latency; skipped entirely at zero so no event-loop turn is spent.

        With ``since`` (the event loop's clock when the request arrived) only what is left
        of it: a service's latency includes its own processing, so work done before
        answering must not add to it."""
        latency = self.plan.latency_seconds
        if since is not None:
            latency -= asyncio.get_running_loop().time() - since
        if latency > 0:
            await asyncio.sleep(latency)

    async def slow_down(self) -> None:
        """The delay of a slow answer; callers count it (they persist counts differently)."""
        await asyncio.sleep(self.plan.slow_seconds)

    def retry_after_header(self) -> str:
        """The Retry-After value as a decimal number of seconds ("1", "0.25")."""
        return format(self.plan.retry_after_seconds, "g")
