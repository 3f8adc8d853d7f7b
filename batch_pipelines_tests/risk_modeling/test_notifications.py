"""Teams cards for failed batches, delivered to the webhook sink; failures never raise; one
card per failure whether the asset, the sensor or both notice it."""

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg

from batch_pipelines.batch_actions.jobs import batch_control
from batch_pipelines.clients.teams import notify_batch
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.resources import BatchStoreResource, TeamsResource
from batch_pipelines.risk_modeling.cycle_batches import FAMILY
from batch_pipelines.risk_modeling.notifications import (
    CLAIM_MESSAGE,
    CLAIM_TIMEOUT,
    SENSOR_OVERLAP,
    SENSOR_SENDER,
    batch_card,
    batches_to_notify,
    describe_notification,
    failure_key,
    notify_failed_batch,
    sensor_window_start,
    stale_claim,
)
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sensors import failed_batch_notifications
from batch_pipelines.simulators.embedded import teams_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.teams import TeamsSimulator
from batch_pipelines.store.batch_store import BatchStore, JobChange


def _card():
    return batch_card(
        cycle="202503_Quarterly",
        batch_type="Analysis",
        batch_id=7,
        status=BatchStatus.FAILED,
        counts={"FINISHED": 5, "FAILED": 2},
        run_url="http://127.0.0.1:3000/runs/abc",
    )


def test_a_failed_batch_card_names_cycle_type_batch_status_counts_and_links_the_run():
    card = _card()
    text = str(card)
    for expected in (
        "202503_Quarterly",
        "Analysis",
        "'7'",
        "FAILED",
        "Jobs FAILED",
        "http://127.0.0.1:3000/runs/abc",
    ):
        assert expected in text
    assert card["type"] == "AdaptiveCard"


def test_a_failed_batch_card_shows_the_cycle_stage_and_step_as_the_seeds_card_does():
    facts = {f["title"]: f["value"] for f in _card()["body"][1]["facts"]}
    assert facts["Cycle"] == "202503_Quarterly"
    assert facts["Stage"] == "09 of 12"  # Analysis is the ninth of the cycle's batch types
    assert facts["Step"] == "risk_modeling/analysis"
    assert facts["Batch type"] == "Analysis"


def test_the_card_is_recorded_by_the_webhook():
    sink = TeamsSimulator()
    assert asyncio.run(notify_batch(teams_client(sink), _card())) is True
    (recorded,) = sink.cards()
    assert "Analysis batch FAILED" in str(recorded)


def test_an_undeliverable_notification_is_logged_and_never_raises(caplog):
    sink = TeamsSimulator(faults=FaultPlan(server_error_rate=1.0))
    from batch_pipelines.core.backoff import RetryPolicy

    client = teams_client(sink, retry=RetryPolicy(max_retries=1, backoff_base_seconds=0.001))
    assert asyncio.run(notify_batch(client, _card())) is False
    assert "not delivered" in caplog.text
    assert sink.cards() == []


# ------------------------------------------------- one card per failure, from any caller

CYCLE = "202503_Quarterly"
DAGSTER = "http://dagster.example:3000"


def _failed_batch(store: BatchStore, *, batch_type: str = "Analysis") -> int:
    batch_id = store.create_batch(
        family=FAMILY,
        batch_type=batch_type,
        partition_key=CYCLE,
        job_configurations=[{"key": "A1", "data": {}}, {"key": "A2", "data": {}}],
    )
    jobs = store.list_jobs(batch_id)
    path = (JobStatus.SUBMITTED, JobStatus.RUNNING)
    for job, last in zip(jobs, (JobStatus.FINISHED, JobStatus.FAILED), strict=True):
        current = job.status
        for status in (*path, last):
            store.apply_job_changes([JobChange(job_id=job.id, expected=current, status=status)])
            current = status
    assert store.reconcile_batch(batch_id).status is BatchStatus.FAILED
    return batch_id


def _sent(store: BatchStore, batch_id: int) -> list[dict]:
    return [e for e in store.batch_events(batch_id) if e["message"] == "Teams notification sent"]


def test_a_failure_gets_one_card_however_many_callers_notice_it(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sink = TeamsSimulator()
    batch_id = _failed_batch(store)
    first = notify_failed_batch(
        store, teams_client(sink), batch_id, dagster_url=DAGSTER, run_id="run-1"
    )
    again = notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER)
    assert (first, again) == (True, None)
    (card,) = sink.cards()
    assert f"{DAGSTER}/runs/run-1" in str(card)
    assert f"{DAGSTER}/assets/risk_modeling/analysis" in str(card)
    assert len(_sent(store, batch_id)) == 1
    assert describe_notification(store, batch_id) == "sent by run run-1"
    store.dispose()


def test_a_batch_that_fails_again_after_a_resubmission_gets_a_second_card(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sink = TeamsSimulator()
    batch_id = _failed_batch(store)
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER)
    (failed,) = store.list_jobs(batch_id, skipped=False, statuses=[JobStatus.FAILED])
    (new_id,) = store.resubmit_jobs([failed.id])
    for expected, status in (
        (JobStatus.INITIATED, JobStatus.SUBMITTED),
        (JobStatus.SUBMITTED, JobStatus.FAILED),
    ):
        store.apply_job_changes([JobChange(job_id=new_id, expected=expected, status=status)])
    assert store.reconcile_batch(batch_id).status is BatchStatus.FAILED
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER)
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER) is None
    assert len(sink.cards()) == 2
    store.dispose()


def test_a_batch_that_is_not_failed_or_not_risk_modeling_gets_no_card(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sink = TeamsSimulator()
    active = store.create_batch(
        family=FAMILY, batch_type="Analysis", job_configurations=[{"key": "A1", "data": {}}]
    )
    other = store.create_batch(
        family="document_ai", batch_type="docs", job_configurations=[{"key": "d", "data": {}}]
    )
    store.set_batch_status(other, BatchStatus.ACTIVE)
    store.set_batch_status(other, BatchStatus.CANCELLED)
    for batch_id in (active, other):
        assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER) is None
    assert sink.cards() == []
    store.dispose()


def test_a_batch_cancelled_outside_an_asset_run_is_notified_once_by_the_sensor(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    batch_id = store.create_batch(
        family=FAMILY,
        batch_type="Grouping",
        partition_key=CYCLE,
        job_configurations=[{"key": "G1", "data": {}}],
    )
    # What `batch-pipelines batch cancel` and the batch_control job do: only the store.
    store.set_batch_status(batch_id, BatchStatus.ACTIVE)
    store.set_batch_status(batch_id, BatchStatus.CANCELLED)
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "teams": TeamsResource(),
        "risk_modeling": RiskModelingSettings(dagster_url=DAGSTER),
    }
    with dg.build_sensor_context(resources=resources) as context:
        first = failed_batch_notifications(context)
        cursor = context.cursor
    with dg.build_sensor_context(resources=resources, cursor=cursor) as context:
        second = failed_batch_notifications(context)
    assert f"[{batch_id}]" in first.skip_message
    assert "no batch failed" in second.skip_message
    # The resource handed to the sensor is its own copy, with its own sink: read what the
    # store recorded as delivered.
    (sent,) = _sent(store, batch_id)
    card = sent["data"]["card"]
    assert sent["data"]["delivered"] is True
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Status"] == "CANCELLED" and facts["Cycle"] == CYCLE
    assert (facts["Stage"], facts["Step"]) == ("10 of 12", "risk_modeling/grouping")
    store.dispose()


def test_a_batch_cancelled_by_the_batch_control_job_gets_its_card_from_the_sensor(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    batch_id = _failed_batch(store)
    store.resubmit_jobs(
        [j.id for j in store.list_jobs(batch_id, skipped=False, statuses=[JobStatus.FAILED])]
    )
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "teams": TeamsResource(),
        "risk_modeling": RiskModelingSettings(dagster_url=DAGSTER),
    }
    with dg.instance_for_test() as instance:
        assert batch_control.execute_in_process(
            run_config={
                "ops": {
                    "change_batch_status": {"config": {"batch_id": batch_id, "action": "cancel"}}
                }
            },
            resources={"batch_store": resources["batch_store"]},
            instance=instance,
        ).success
    with dg.build_sensor_context(resources=resources) as context:
        failed_batch_notifications(context)
    (sent,) = _sent(store, batch_id)
    facts = {f["title"]: f["value"] for f in sent["data"]["card"]["body"][1]["facts"]}
    assert (facts["Status"], facts["Stage"], facts["Step"]) == (
        "CANCELLED",
        "09 of 12",
        "risk_modeling/analysis",
    )
    store.dispose()


def test_the_sensor_looks_back_from_its_last_tick_and_starts_at_now_on_its_first():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    last = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert sensor_window_start(None, now) == now - SENSOR_OVERLAP
    assert sensor_window_start(last.isoformat(), now) == last - SENSOR_OVERLAP
    assert sensor_window_start("garbage", now) == now - SENSOR_OVERLAP


def test_only_failed_batches_settled_in_the_window_are_due():
    since = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def batch(status, settled):
        return SimpleNamespace(status=status, settled_at=settled)

    before, after = since - timedelta(seconds=1), since + timedelta(seconds=1)
    due = batch(BatchStatus.ERROR, after)
    candidates = [
        due,
        batch(BatchStatus.FAILED, before),
        batch(BatchStatus.COMPLETED, after),
        batch(BatchStatus.ACTIVE, None),
    ]
    assert batches_to_notify(candidates, since) == [due]


# --------------------------------------- at least once: a sender killed after claiming


def _killed_after_claiming(store: BatchStore, batch_id: int, *, minutes_ago: float) -> None:
    """What a sender killed between its claim and its card leaves: a claim, no outcome."""
    import sqlalchemy as sa

    from batch_pipelines.store import schema

    batch = store.get_batch(batch_id)
    key = failure_key(batch.status, batch.settled_at)
    data = {"run_id": "run-killed", "by": "run run-killed"}
    assert store.add_batch_event_once(batch_id, CLAIM_MESSAGE, key=key, data=data)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.batch_events)
            .where(schema.batch_events.c.batch_id == batch_id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))
        )


def test_a_card_whose_sender_was_killed_after_claiming_is_sent_once_the_claim_is_stale(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sink = TeamsSimulator()
    batch_id = _failed_batch(store)
    _killed_after_claiming(store, batch_id, minutes_ago=1)
    # A fresh claim may still be sending: not yet.
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER) is None
    later = datetime.now(UTC) + CLAIM_TIMEOUT
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER, now=later)
    # Sent and recorded: no more cards for this failure, however late.
    assert (
        notify_failed_batch(
            store, teams_client(sink), batch_id, dagster_url=DAGSTER, now=later + CLAIM_TIMEOUT
        )
        is None
    )
    assert len(sink.cards()) == 1 and len(_sent(store, batch_id)) == 1
    assert describe_notification(store, batch_id) == f"sent by {SENSOR_SENDER}"
    store.dispose()


def test_the_sensor_resends_a_stale_claim_even_when_the_failure_is_outside_its_window(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    batch_id = _failed_batch(store)
    _killed_after_claiming(store, batch_id, minutes_ago=60)
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "teams": TeamsResource(),
        "risk_modeling": RiskModelingSettings(dagster_url=DAGSTER),
    }
    # Its last tick was long after the failure settled (the daemon was down meanwhile).
    cursor = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with dg.build_sensor_context(resources=resources, cursor=cursor) as context:
        first = failed_batch_notifications(context)
    with dg.build_sensor_context(resources=resources, cursor=cursor) as context:
        second = failed_batch_notifications(context)
    assert f"[{batch_id}]" in first.skip_message
    assert "no batch failed" in second.skip_message
    (sent,) = _sent(store, batch_id)
    assert sent["data"]["delivered"] is True and sent["data"]["by"] == SENSOR_SENDER
    store.dispose()


def test_a_claim_with_an_outcome_after_it_is_never_stale():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    old = now - CLAIM_TIMEOUT - timedelta(seconds=1)

    def event(id_, message, created_at, **data):
        return {"id": id_, "message": message, "created_at": created_at, "data": data}

    claim = event(1, CLAIM_MESSAGE, old, key="FAILED@t")
    assert stale_claim([claim], "FAILED@t", now) == claim
    assert stale_claim([claim], "FAILED@t", old + timedelta(seconds=1)) is None
    assert stale_claim([claim], "CANCELLED@u", now) is None
    for outcome in ("Teams notification sent", "Teams notification NOT delivered"):
        assert stale_claim([claim, event(2, outcome, old, key="FAILED@t")], "FAILED@t", now) is None
    # A takeover claim that died too is stale in its turn.
    takeover = event(3, CLAIM_MESSAGE, old, key="FAILED@t again after claim 1", failure="FAILED@t")
    sent_before = event(2, "Teams notification sent", old, key="FAILED@t")
    assert stale_claim([claim, sent_before, takeover], "FAILED@t", now) == takeover


def test_the_assets_log_says_who_sent_the_card_when_the_sensor_was_first(tmp_path):
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sink = TeamsSimulator()
    batch_id = _failed_batch(store)
    assert describe_notification(store, batch_id) == "not sent"
    assert notify_failed_batch(store, teams_client(sink), batch_id, dagster_url=DAGSTER)
    late = notify_failed_batch(
        store, teams_client(sink), batch_id, dagster_url=DAGSTER, run_id="run-1"
    )
    assert late is None
    assert describe_notification(store, batch_id) == f"sent by {SENSOR_SENDER}"
    store.dispose()
