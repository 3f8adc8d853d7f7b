"""Results delivered to their recipients through the Teams webhook (the simulator, with its
429s and 5xx): distribution recipients get the batch's results, preference members their
own; a failed delivery is recorded and never fails the batch; a rerun delivers only what
was not delivered yet."""

from __future__ import annotations

import dagster as dg
import pytest

from batch_pipelines.configured_batches.contexts import DELIVERY, ContextStore
from batch_pipelines.configured_batches.delivery import BatchOutcome, plan_deliveries, result_card
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE, load_job_configuration
from batch_pipelines.configured_batches.preferences import Preference
from batch_pipelines.configured_batches.repositories import CategoryRepository, UserRepository
from batch_pipelines.configured_batches.runner import GroupMembers, run_batch
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.resources import ModelsResource
from batch_pipelines.simulators.embedded import teams_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.teams import TeamsSimulator
from batch_pipelines.store.batch_store import BatchStore

from .batch_data import ACTIVE_USERS, seed

TICK = "2026-11-30T08:00-05:00"
JOBS = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}


@pytest.fixture
def store(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    seed(store.engine)
    yield store
    store.dispose()


def _client_factory(sim: TeamsSimulator, slept: list[float]):
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return lambda: teams_client(sim, sleep=sleep)


def _run(store, job, sim, slept, group=None):
    return run_batch(
        store,
        job,
        tick=TICK,
        client_factory=ModelsResource().client,
        users=UserRepository(store.engine),
        categories=CategoryRepository(store.engine),
        group=group,
        delivery_client_factory=_client_factory(sim, slept),
    )


def _mentioned(card: dict) -> str:
    return card["msteams"]["entities"][0]["mentioned"]["id"]


def test_distribution_recipients_get_the_batchs_results_once_even_when_the_tick_is_rerun(store):
    sim, slept = TeamsSimulator(), []
    job = JOBS["team_activity_digest"]  # recipients user_0001 and user_0002
    first = _run(store, job, sim, slept)
    assert (first.deliveries.sent, first.deliveries.failed) == (2, 0)
    cards = sim.cards()
    assert sorted(_mentioned(c["card"]) for c in cards) == [
        "user_0001@example.com",
        "user_0002@example.com",
    ]
    facts = {f["title"]: f["value"] for f in cards[0]["card"]["body"][-1]["facts"]}
    assert facts["Batch"] == f"team_activity_digest/{TICK}" and facts["Status"] == "completed"
    recorded = ContextStore(store.engine).get(DELIVERY, f"user_0001/team_activity_digest/{TICK}")
    assert recorded["status"] == "delivered" and recorded["channel"] == "teams"

    again = _run(store, job, sim, slept)
    assert (again.deliveries.sent, again.deliveries.already_delivered) == (0, 2)
    assert len(sim.cards()) == 2  # nothing delivered twice


def test_a_delivery_that_keeps_failing_is_recorded_and_the_batch_still_completes(store):
    down, slept = TeamsSimulator(faults=FaultPlan(server_error_rate=1.0)), []
    job = JOBS["team_activity_digest"]
    result = _run(store, job, down, slept)
    assert result.status == BatchStatus.COMPLETED and not result.failed_keys
    assert (result.deliveries.sent, result.deliveries.failed) == (0, 2)
    assert slept, "the client retried the 5xx with backoff before giving up"
    recorded = ContextStore(store.engine).get(DELIVERY, f"user_0002/team_activity_digest/{TICK}")
    assert recorded["status"] == "failed" and "ServerError" in recorded["error"]
    assert "webhook/" not in recorded["error"]  # the webhook URL is the secret
    events = store.batch_events(result.batch_id)
    assert any(
        e["level"] == "WARNING" and "result deliveries failed" in e["message"] for e in events
    )

    # The webhook is back: a rerun of the tick delivers what failed, and sends no request again.
    up = TeamsSimulator()
    again = _run(store, job, up, slept)
    assert (again.deliveries.sent, again.requests_total - again.reused) == (2, 0)
    assert len(up.cards()) == 2


def test_rate_limited_deliveries_wait_for_retry_after_and_arrive(store):
    sim = TeamsSimulator(faults=FaultPlan(seed=3, rate_limit_rate=0.5, retry_after_seconds=2))
    slept: list[float] = []
    result = _run(store, JOBS["team_activity_digest"], sim, slept)
    assert (result.deliveries.sent, result.deliveries.failed) == (2, 0)
    assert sim.stats()["faults_injected"]["rate_limited"] > 0
    assert 2.0 in slept  # the Retry-After of the 429


def test_each_member_of_a_preference_batch_gets_their_own_result(store):
    sim, slept = TeamsSimulator(), []
    job = JOBS["personal_daily_digest"]
    members = {
        uid: Preference.parse(
            {
                "tenant_id": "tenant_a",
                "user_id": uid,
                "feature_type": job.feature_type,
                "preferred_time": "09:00",
            },
            where="test",
        )
        for uid in ACTIVE_USERS[:3]
    }
    group = GroupMembers("daily_digest|daily|*|09:00|UTC", members)
    result = _run(store, job, sim, slept, group)
    assert result.deliveries.sent == 3
    by_user = {_mentioned(c["card"]): c["card"] for c in sim.cards()}
    assert set(by_user) == {f"{uid}@example.com" for uid in ACTIVE_USERS[:3]}
    own = ContextStore(store.engine).find("configured_request", f"{result.batch_key}/")
    results = {r.data["user_ids"][0]: r.data["result"] for r in own}
    text = by_user["user_0001@example.com"]["body"][2]["text"]
    assert results["user_0001"][:100] in text and results["user_0002"][:100] not in text


def test_a_card_is_planned_once_per_recipient_and_skipped_when_delivered_before():
    outcome = BatchOutcome("j", "J", "j/t", "t", "completed", 2, 2)
    users = {"a": {"name": "A", "email": "a@example.com"}, "b": {"name": "B", "email": None}}
    planned, done = plan_deliveries(
        outcome,
        recipients=["a", "b"],
        batch_results=["one", "two"],
        own_results={"a": ["own"], "c": ["c's own"], "d": []},
        users=users,
        already_delivered={"b/j/t"},
    )
    assert [(d.recipient, d.kind) for d in planned] == [("a", "batch"), ("c", "own_result")]
    assert done == 1
    assert "msteams" not in result_card(outcome, ["x"], users["b"])  # no e-mail: no mention


def test_the_asset_reports_its_deliveries_in_metadata(store, tmp_path):
    from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
    from batch_pipelines.configured_batches.definitions import configured_batches_definitions
    from batch_pipelines.configured_batches.resources import ConfigServiceResource
    from batch_pipelines.resources import BatchStoreResource, TeamsResource

    defs = configured_batches_definitions(str(SAMPLE_JOBS_FILE))
    asset = next(a for a in defs.assets if a.key.path == ["configured_batch"])
    result = dg.materialize(
        [asset],
        partition_key="team_activity_digest",
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "batch_store": BatchStoreResource(database_url=str(store.engine.url)),
            "models": ModelsResource(),
            "configured_jobs": ConfiguredJobsResource(),
            "config_service": ConfigServiceResource(),
            "teams": TeamsResource(),
        },
        run_config={"ops": {"configured_batch": {"config": {"tick": TICK}}}},
    )
    (materialization,) = result.asset_materializations_for_node("configured_batch")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["deliveries_sent"], meta["deliveries_failed"]) == (2, 0)


def test_a_delivery_client_that_cannot_be_built_fails_the_cards_not_the_batch(store):
    from batch_pipelines.clients.teams import TeamsClient

    result = run_batch(
        store,
        JOBS["team_activity_digest"],
        tick=TICK,
        client_factory=ModelsResource().client,
        users=UserRepository(store.engine),
        categories=CategoryRepository(store.engine),
        delivery_client_factory=lambda: TeamsClient("not a url"),
    )
    assert result.status == BatchStatus.COMPLETED
    assert (result.deliveries.sent, result.deliveries.failed) == (0, 2)
    recorded = ContextStore(store.engine).get(DELIVERY, f"user_0001/team_activity_digest/{TICK}")
    assert recorded["status"] == "failed" and "ConfigurationError" in recorded["error"]
    assert "not a url" not in recorded["error"]
