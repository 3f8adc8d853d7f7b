"""Strategies: how many requests each type sends, what they contain, and how they retry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.clients.http import BadRequest, RateLimited, ServerError
from batch_pipelines.configured_batches.job_config import (
    SAMPLE_JOBS_FILE,
    JobConfig,
    load_job_configuration,
)
from batch_pipelines.configured_batches.strategies import (
    BatchInputs,
    Request,
    Strategy,
    TemplateError,
    execute_requests,
    idempotency_key,
    plan_requests,
    render_template,
    strategy_for,
)

JOBS = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}
USERS = [
    {"id": f"u{i}", "name": f"User {i}", "tenant_id": "t1" if i % 2 else "t2"} for i in range(5)
]


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    data: dict
    user_ids: list


ITEMS = {
    "product_category": [
        Item(
            f"p{i}",
            "product_category",
            {"name": f"Product {i}"},
            ["u0", "u1"] if i == 0 else ["u2"],
        )
        for i in range(3)
    ],
    "audience_preferences": [Item("a0", "audience_preferences", {"name": "A"}, [])],
    "niche_topics": [Item("n0", "niche_topics", {"name": "N"}, ["u1"])],
}


def pref(uid: str, **overrides) -> SimpleNamespace:
    return SimpleNamespace(
        user_id=uid,
        tenant_id="t1",
        feature_type="f",
        frequency="daily",
        preferred_day=None,
        preferred_time="09:00",
        timezone="UTC",
        template_overrides=overrides,
    )


def test_each_type_maps_to_the_seeds_strategy():
    assert {j: strategy_for(job) for j, job in JOBS.items()} == {
        "user_welcome_notes": Strategy.INDIVIDUAL,
        "product_descriptions": Strategy.INDIVIDUAL,
        "team_activity_digest": Strategy.OBJECT,
        "audience_trend_analysis": Strategy.OBJECT,
        "audience_niche_correlation": Strategy.COMBINED,
        "personal_daily_digest": Strategy.PREFERENCE,
        "personal_product_picks": Strategy.PREFERENCE,
        "group_activity_report": Strategy.PREFERENCE,
        "niche_topic_briefing": Strategy.PREFERENCE,
    }


def test_individual_jobs_send_one_request_per_user_or_item_with_the_template_rendered():
    users = plan_requests(JOBS["user_welcome_notes"], BatchInputs(users=USERS), tick="t")
    assert [r.key for r in users] == [f"user:u{i}" for i in range(5)]
    assert (
        users[0].prompt == "Write a short summary of the day ahead for User 0, in a friendly tone."
    )
    assert users[1].tenants == {"u1": "t1"}
    items = plan_requests(
        JOBS["product_descriptions"], BatchInputs(items_by_category=ITEMS), tick="t"
    )
    assert [r.key for r in items] == [
        "item:product_category:p0",
        "item:product_category:p1",
        "item:product_category:p2",
    ]
    assert items[2].prompt.endswith("Product 2.")


def test_object_and_combined_jobs_send_one_request_for_the_whole_data():
    (whole,) = plan_requests(
        JOBS["audience_trend_analysis"], BatchInputs(items_by_category=ITEMS), tick="t"
    )
    assert "audience_preferences (1 items)" in whole.prompt and whole.item_ids == ("a0",)
    (combined,) = plan_requests(
        JOBS["audience_niche_correlation"], BatchInputs(items_by_category=ITEMS), tick="t"
    )
    assert (
        combined.prompt == "Summarize the correlations between audience_preferences, niche_topics."
    )
    assert set(combined.data["categories"]) == {"audience_preferences", "niche_topics"}


@given(st.integers(0, 250), st.integers(1, 60))
def test_batch_users_are_sent_in_chunks_that_cover_every_user_once(n, chunk):
    job = JOBS["team_activity_digest"].model_copy(update={"chunk_size": chunk})
    users = [{"id": f"u{i}"} for i in range(n)]
    requests = plan_requests(job, BatchInputs(users=users), tick="t")
    assert len(requests) == -(-n // chunk)
    assert [u for r in requests for u in r.user_ids] == [u["id"] for u in users]
    assert all(len(r.user_ids) <= chunk for r in requests)


def test_preference_requests_apply_each_users_template_overrides():
    job = JOBS["personal_daily_digest"]
    prefs = {
        "u0": pref("u0", length="long"),
        "u1": pref("u1", template="Only {{ user.name }}!"),
        "u2": pref("u2"),
    }
    requests = plan_requests(job, BatchInputs(users=USERS[:3], preferences=prefs), tick="t")
    assert [r.prompt for r in requests] == [
        "Write a long summary for User 0 of today's news.",
        "Only User 1!",
        "Write a short summary for User 2 of today's news.",
    ]


def test_preference_category_requests_carry_the_items_that_reference_the_user():
    job = JOBS["personal_product_picks"]
    prefs = {u["id"]: pref(u["id"]) for u in USERS[:3]}
    requests = plan_requests(
        job, BatchInputs(users=USERS[:3], items_by_category=ITEMS, preferences=prefs), tick="t"
    )
    assert {r.key: r.item_ids for r in requests} == {
        "user:u0": ("p0",),
        "user:u1": ("p0",),
        "user:u2": ("p1", "p2"),
    }
    assert requests[2].prompt == "Summarize these 2 products for User 2 in a neutral tone."


def test_preference_batch_jobs_share_one_request_among_users_with_the_same_overrides():
    job = JOBS["group_activity_report"]
    prefs = {
        "u0": pref("u0", length="long"),
        "u1": pref("u1"),
        "u2": pref("u2", length="long"),
        "u3": pref("u3"),
    }
    requests = plan_requests(job, BatchInputs(users=USERS[:4], preferences=prefs), tick="t")
    assert sorted(r.user_ids for r in requests) == [("u0", "u2"), ("u1", "u3")]
    assert {r.prompt for r in requests} == {
        "Summarize the activity of these 2 users in a long report.",
        "Summarize the activity of these 2 users in a short report.",
    }


def test_a_template_renders_dotted_values_only_and_names_a_missing_one():
    assert render_template("{{ a.b }} / {{ c }}", {"a": {"b": 1}, "c": ["x", "y"]}) == "1 / x, y"
    with pytest.raises(TemplateError) as caught:
        render_template(
            "Hi {{ user.nickname }}", {"user": {"name": "A"}}, job_id="j1", request_key="user:u1"
        )
    assert (
        "j1" in str(caught.value)
        and "user.nickname" in str(caught.value)
        and "user:u1" in str(caught.value)
    )
    # No attribute access: a dunder is just a missing key.
    with pytest.raises(TemplateError):
        render_template("{{ user.__class__ }}", {"user": {"name": "A"}})


class FlakyClient:
    """Fails each request ``failures`` times with ``error``, then answers; records calls."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error = failures, error
        self.calls: dict[str, list[str]] = {}
        self.running = 0
        self.max_running = 0

    async def chat(self, messages, *, model, idempotency_key=None):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0.001)
            calls = self.calls.setdefault(messages[1]["content"], [])
            calls.append(idempotency_key)
            if len(calls) <= self.failures:
                raise self.error
            return SimpleNamespace(
                content="ok", model=model, usage={"prompt_tokens": 3, "completion_tokens": 1}
            )
        finally:
            self.running -= 1


def _run(client, job: JobConfig, n: int = 4):
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    requests = [Request(f"r{i}", f"prompt {i}", {}) for i in range(n)]
    outcomes = asyncio.run(execute_requests(client, job, requests, batch_key="b/1", sleep=sleep))
    return outcomes, delays


def test_a_transient_failure_is_retried_with_backoff_and_the_same_idempotency_key():
    job = JOBS["user_welcome_notes"].model_copy(update={"retry_limit": 3})
    client = FlakyClient(2, ServerError("boom", status=503))
    outcomes, delays = _run(client, job)
    assert all(o.succeeded and o.attempts == 3 for o in outcomes)
    assert all(len(set(keys)) == 1 for keys in client.calls.values())
    assert len(delays) == 8 and all(d >= 0 for d in delays)


def test_retries_stop_at_the_retry_limit():
    job = JOBS["user_welcome_notes"].model_copy(update={"retry_limit": 2})
    outcomes, delays = _run(
        FlakyClient(5, RateLimited("slow down", status=429, retry_after=0.25)), job, n=1
    )
    assert (
        outcomes[0].status == "failed"
        and outcomes[0].attempts == 3
        and "slow down" in outcomes[0].error
    )
    assert delays == [0.25, 0.25]  # the service's Retry-After is obeyed


def test_a_permanent_failure_is_not_retried():
    outcomes, delays = _run(
        FlakyClient(1, BadRequest("bad prompt", status=400)), JOBS["user_welcome_notes"], n=1
    )
    assert outcomes[0].attempts == 1 and outcomes[0].status == "failed" and delays == []


def test_no_more_requests_run_at_once_than_the_jobs_concurrency():
    job = JOBS["user_welcome_notes"].model_copy(update={"concurrency": 3})
    client = FlakyClient(0, ServerError("x"))
    _run(client, job, n=12)
    assert client.max_running == 3


def test_idempotency_keys_differ_per_request_and_batch_and_repeat_for_the_same_one():
    assert idempotency_key("b/1", "r1") == idempotency_key("b/1", "r1")
    assert (
        len(
            {
                idempotency_key("b/1", "r1"),
                idempotency_key("b/1", "r2"),
                idempotency_key("b/2", "r1"),
            }
        )
        == 3
    )
