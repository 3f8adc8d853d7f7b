"""The Teams webhook client: card shape, size limit, retries, the URL kept secret."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from batch_pipelines.clients.http import BadRequest, ServerError
from batch_pipelines.clients.teams import CardTooLarge, TeamsClient, adaptive_card
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines_tests.clients.support import Script, SleepRecorder, run

SIG = "Xk9s7dJf2Lq0Wm4Zp8Rt6Yv1Bn3Hc5"
WEBHOOK = (
    "https://prod-42.westeurope.logic.azure.com:443/workflows/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    f"/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
)
WORKFLOW_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def make(script: Script, **kwargs) -> TeamsClient:
    kwargs.setdefault("sleep", SleepRecorder())
    return TeamsClient(WEBHOOK, transport=script.transport(), **kwargs)


def assert_no_webhook(text: str) -> None:
    for part in (WEBHOOK, SIG, WORKFLOW_ID):
        assert part not in text


def test_the_adaptive_card_has_title_text_facts_and_a_link() -> None:
    card = adaptive_card(
        "Cycle 2025Q1 finished",
        [("Jobs", "12"), ("Failed", "0")],
        link=("Open run", "https://dagster/runs/1"),
        text="All good",
    )
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, text, facts = card["body"]
    assert (title["type"], title["text"]) == ("TextBlock", "Cycle 2025Q1 finished")
    assert (text["type"], text["text"]) == ("TextBlock", "All good")
    assert facts == {
        "type": "FactSet",
        "facts": [{"title": "Jobs", "value": "12"}, {"title": "Failed", "value": "0"}],
    }
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open run", "url": "https://dagster/runs/1"}
    ]


def test_a_card_without_text_or_link_has_only_title_and_facts() -> None:
    card = adaptive_card("t", [])
    assert [b["type"] for b in card["body"]] == ["TextBlock", "FactSet"]
    assert "actions" not in card


def test_send_card_posts_the_card_as_a_message_attachment_to_the_exact_url() -> None:
    script = Script(httpx.Response(202))
    card = adaptive_card("t", [("a", "b")])
    run(make(script).send_card(card))
    request = script.requests[0]
    assert str(request.url) == WEBHOOK.replace(":443", "")
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_success(status: int) -> None:
    script = Script(httpx.Response(status))
    run(make(script).send_card(adaptive_card("t", [])))
    assert len(script.requests) == 1


def test_429_and_5xx_are_retried() -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(502), httpx.Response(202)
    )
    sleep = SleepRecorder()
    run(make(script, sleep=sleep).send_card(adaptive_card("t", [])))
    assert len(script.requests) == 3 and sleep.delays[0] == 2.0


def test_a_card_over_28_kb_is_refused_before_sending() -> None:
    script = Script()
    card = adaptive_card("big", [(f"k{i}", "v" * 100) for i in range(300)])
    with pytest.raises(CardTooLarge) as info:
        run(make(script).send_card(card))
    assert isinstance(info.value, ConfigurationError) and script.requests == []
    assert info.value.details["limit"] == 28 * 1024


def test_a_card_just_under_the_limit_is_sent() -> None:
    script = Script(httpx.Response(202))
    overhead = len(
        json.dumps(
            {
                "type": "message",
                "attachments": [
                    {"contentType": "application/vnd.microsoft.card.adaptive", "content": {"x": ""}}
                ],
            },
            separators=(",", ":"),
        )
    )
    run(make(script).send_card({"x": "y" * (28 * 1024 - overhead)}))
    assert len(script.requests[0].content) == 28 * 1024


def test_the_webhook_url_never_appears_in_errors_or_repr() -> None:
    script = Script(httpx.Response(400, text=f"Bad card posted to {WEBHOOK} (sig {SIG})"))
    client = make(script)
    with pytest.raises(BadRequest) as info:
        run(client.send_card(adaptive_card("t", [])))
    for text in (
        str(info.value),
        repr(info.value),
        str(info.value.to_dict()),
        repr(client),
        str(vars(client)),
    ):
        assert_no_webhook(text)
    assert "prod-42.westeurope.logic.azure.com" in repr(client)


def test_the_webhook_url_never_reaches_logs_at_any_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(
        httpx.Response(500, text=f"upstream {WEBHOOK}"),
        httpx.ConnectError(f"cannot reach {WEBHOOK}"),
        httpx.Response(500),
    )
    with pytest.raises(ServerError) as info:
        run(make(script, retry=RetryPolicy(max_retries=2)).send_card(adaptive_card("t", [])))
    assert any(r.name == "batch_pipelines.clients" for r in caplog.records)
    assert_no_webhook(caplog.text)
    assert_no_webhook(str(info.value))


def test_an_invalid_webhook_url_is_a_configuration_error_that_does_not_echo_it() -> None:
    bad = f"https://host:{SIG}/x"
    with pytest.raises(ConfigurationError) as info:
        TeamsClient(bad)
    assert SIG not in str(info.value)
