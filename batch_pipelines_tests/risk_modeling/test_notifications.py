"""Teams cards for failed batches, delivered to the webhook sink; failures never raise."""

import asyncio

from batch_pipelines.clients.teams import notify_batch
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.risk_modeling.notifications import batch_card
from batch_pipelines.simulators.embedded import teams_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.teams import TeamsSimulator


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
