"""Fault plans are validated, configurable from the environment and reproducible."""

from __future__ import annotations

import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.simulators.faults import FaultInjector, FaultPlan


def test_a_plan_is_read_from_sim_environment_variables_with_latency_in_milliseconds():
    plan = FaultPlan.from_env_mapping(
        {
            "SIM_SEED": "7",
            "SIM_LATENCY_MS": "250",
            "SIM_RATE_LIMIT_RATE": "0.1",
            "SIM_RETRY_AFTER_SECONDS": "0.5",
            "SIM_WORKFLOW_FAILURE_RATE": "0.2",
            "UNRELATED": "x",
        }
    )
    assert plan == FaultPlan(
        seed=7,
        latency_seconds=0.25,
        rate_limit_rate=0.1,
        retry_after_seconds=0.5,
        workflow_failure_rate=0.2,
    )
    assert FaultPlan.from_env_mapping({}) == FaultPlan()


@pytest.mark.parametrize(
    "env",
    [
        {"SIM_SEED": "seven"},
        {"SIM_SLOW_RATE": "1.5"},
        {"SIM_SERVER_ERROR_RATE": "0.6", "SIM_RATE_LIMIT_RATE": "0.6"},
        {"SIM_SLOW_SECONDS": "-1"},
    ],
)
def test_a_plan_that_cannot_be_honoured_is_refused(env):
    with pytest.raises(ConfigurationError):
        FaultPlan.from_env_mapping(env)


def test_overrides_keep_fields_given_as_none():
    plan = FaultPlan(seed=1, slow_rate=0.5).with_overrides(seed=None, slow_rate=0.1)
    assert (plan.seed, plan.slow_rate) == (1, 0.1)


def test_the_same_seed_gives_the_same_decisions_and_zero_rates_inject_nothing():
    plan = FaultPlan(seed=11, server_error_rate=0.2, rate_limit_rate=0.2, slow_rate=0.3)
    injectors = [FaultInjector(plan), FaultInjector(plan)]
    runs = [[injector.decide(may_be_slow=True) for _ in range(200)] for injector in injectors]
    assert runs[0] == runs[1]
    kinds = {d.kind for d in runs[0]}
    assert {"rate_limited", None} <= kinds and any(
        k and k.startswith("server_error_") for k in kinds
    )
    assert any(d.slow for d in runs[0])
    quiet = FaultInjector(FaultPlan())
    assert all(quiet.decide(may_be_slow=True) == quiet.decide() for _ in range(50))
    assert not any(quiet.decide(may_be_slow=True).slow or quiet.workflow_fails() for _ in range(50))


def test_retry_after_is_a_decimal_number_of_seconds():
    assert FaultInjector(FaultPlan(retry_after_seconds=1.0)).retry_after_header() == "1"
    assert FaultInjector(FaultPlan(retry_after_seconds=0.25)).retry_after_header() == "0.25"


def test_the_latency_counts_from_arrival_so_work_before_the_answer_is_inside_it(
    monkeypatch,
) -> None:
    import asyncio

    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    injector = FaultInjector(FaultPlan(latency_seconds=0.05))

    async def go() -> None:
        monkeypatch.setattr("batch_pipelines.simulators.faults.asyncio.sleep", record_sleep)
        now = asyncio.get_running_loop().time()
        await injector.delay(since=now - 0.03)  # 30 ms of work done: 20 ms left
        await injector.delay(since=now - 0.06)  # the work took longer than the latency: no wait
        await injector.delay()  # no arrival time: the whole latency

    asyncio.run(go())
    assert len(slept) == 2
    assert 0.0 < slept[0] <= 0.02 and slept[1] == 0.05
