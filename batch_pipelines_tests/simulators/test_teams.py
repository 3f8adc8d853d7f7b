"""The Teams simulator accepts what Teams Workflows accept and refuses the rest."""

from __future__ import annotations

import pytest

from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.teams import MAX_MESSAGE_BYTES, TeamsSimulator
from batch_pipelines_tests.simulators.helpers import client_for

pytestmark = pytest.mark.anyio


def adaptive_card(text: str = "Batch 7 finished") -> dict:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": text}],
                },
            }
        ],
    }


async def test_an_adaptive_card_is_accepted_with_202_and_recorded():
    sim = TeamsSimulator()
    async with client_for(sim.app) as client:
        answer = await client.post("/webhook/ops/alerts", json=adaptive_card())
        listed = (await client.get("/_sim/cards")).json()
    assert answer.status_code == 202
    assert [(c["webhook"], c["card"]["body"][0]["text"]) for c in sim.cards()] == [
        ("ops/alerts", "Batch 7 finished")
    ]
    assert listed["cards"] == sim.cards()


@pytest.mark.parametrize(
    "payload",
    [
        {"@type": "MessageCard", "text": "legacy connector card"},
        {"type": "message", "attachments": []},
        {
            "type": "message",
            "attachments": [{"contentType": "text/plain", "content": {"type": "AdaptiveCard"}}],
        },
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {"type": "HeroCard"},
                }
            ],
        },
        ["not", "an", "object"],
    ],
)
async def test_anything_but_an_adaptive_card_message_is_refused_with_400(payload):
    sim = TeamsSimulator()
    async with client_for(sim.app) as client:
        answer = await client.post("/webhook/w", json=payload)
    assert answer.status_code == 400
    assert sim.cards() == [] and sim.stats()["rejected_total"] == 1


async def test_a_message_over_28_kb_is_refused_with_413():
    sim = TeamsSimulator()
    big = adaptive_card("x" * MAX_MESSAGE_BYTES)
    fits = adaptive_card("x" * (MAX_MESSAGE_BYTES - 400))
    async with client_for(sim.app) as client:
        assert (await client.post("/webhook/w", json=big)).status_code == 413
        assert (await client.post("/webhook/w", json=fits)).status_code == 202
    assert len(sim.cards()) == 1


async def test_faults_refuse_before_recording_anything():
    sim = TeamsSimulator(faults=FaultPlan(server_error_rate=1.0))
    async with client_for(sim.app) as client:
        answer = await client.post("/webhook/w", json=adaptive_card())
    assert answer.status_code in {500, 502, 503}
    assert sim.cards() == []
