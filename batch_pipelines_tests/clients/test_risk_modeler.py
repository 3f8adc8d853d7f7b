"""The Risk Modeler client: calls, idempotency keys, Location parsing, workflows."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from batch_pipelines.clients.http import Conflict, ServerError, UnexpectedResponse
from batch_pipelines.clients.risk_modeler import (
    RiskModelerClient,
    Workflow,
    workflow_id_from_location,
)
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import IllegalTransition
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines_tests.clients.support import Script, SleepRecorder, run

KEY = "rms-key-0c1d2e3f4a5b6c7d"
HOST = "https://api-euw1.rms.com"


def make(script: Script, **kwargs) -> RiskModelerClient:
    kwargs.setdefault("sleep", SleepRecorder())
    return RiskModelerClient(HOST, KEY, transport=script.transport(), **kwargs)


def accepted(workflow_id: int | str, absolute: bool = True) -> httpx.Response:
    path = f"/riskmodeler/v1/workflows/{workflow_id}"
    return httpx.Response(202, headers={"Location": f"{HOST}{path}" if absolute else path})


def workflow_json(workflow_id: int, status: str = "RUNNING", **extra) -> dict:
    return {
        "id": workflow_id,
        "userName": "u@example.com",
        "status": status,
        "submitTime": "2025-03-01T12:00:00Z",
        "name": f"wf {workflow_id}",
        "type": "EDM",
        "progress": 40,
        "summary": {},
        "jobs": [{"id": 1, "status": "Succeeded"}],
        **extra,
    }


def query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query.decode())


# ---------------------------------------------------------------------- Location


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://api-euw1.rms.com/riskmodeler/v1/workflows/4021", "4021"),
        ("/riskmodeler/v1/workflows/4021", "4021"),
        ("riskmodeler/v2/portfolios/17", "17"),
        ("https://api-euw1.rms.com/riskmodeler/v1/workflows/4021?foo=bar", "4021"),
        ("/riskmodeler/v1/workflows/4021/", "4021"),
        ("  /riskmodeler/v1/workflows/4021#top ", "4021"),
        ("http://127.0.0.1:8080/riskmodeler/v1/workflows/wf%2D7", "wf-7"),
    ],
)
def test_the_id_is_the_last_segment_of_an_absolute_or_relative_location(
    location: str, expected: str
) -> None:
    assert workflow_id_from_location(location) == expected


@pytest.mark.parametrize("location", ["", "/", "https://h/", "https://h", "https://h?wf=4021"])
def test_a_location_without_an_id_is_an_unexpected_response(location: str) -> None:
    with pytest.raises(UnexpectedResponse):
        workflow_id_from_location(location)


# ---------------------------------------------------------------------- submissions


def test_create_edm_posts_the_datasource_operation_with_the_callers_request_id() -> None:
    script = Script(accepted(4021))
    workflow_id = run(make(script).create_edm("EDM_2025", request_id="job-7-a1"))
    assert workflow_id == "4021"
    request = script.requests[0]
    assert (request.method, request.url.path) == ("POST", "/riskmodeler/v2/datasources")
    assert query(request) == {
        "datasourcename": ["EDM_2025"],
        "servername": ["databridge-1"],
        "operation": ["CREATE"],
    }
    assert request.headers["x-rms-requestid"] == "job-7-a1"
    assert request.headers["Authorization"] == KEY


def test_upgrade_edm_uses_the_upgrade_operation_and_a_relative_location() -> None:
    script = Script(accepted(77, absolute=False))
    assert run(make(script).upgrade_edm("EDM_X", request_id="r", server_name="db-2")) == "77"
    assert query(script.requests[0])["operation"] == ["EDM_DATA_UPGRADE"]
    assert query(script.requests[0])["servername"] == ["db-2"]


def test_a_base_url_ending_in_riskmodeler_is_not_doubled() -> None:
    script = Script(accepted(1))
    client = RiskModelerClient(f"{HOST}/riskmodeler/", KEY, transport=script.transport())
    run(client.create_edm("E", request_id="r"))
    assert str(script.requests[0].url).startswith(f"{HOST}/riskmodeler/v2/datasources?")


def test_every_retry_of_one_submission_resends_the_same_request_id() -> None:
    script = Script(
        httpx.Response(503),
        httpx.Response(429, headers={"retry-after": "1"}),
        httpx.Response(
            409, json={"code": "REQUEST_IN_PROGRESS", "message": "in flight", "logId": "l"}
        ),
        accepted(5),
    )
    sleep = SleepRecorder()
    assert run(make(script, sleep=sleep).create_edm("E", request_id="job-42")) == "5"
    assert [r.headers["x-rms-requestid"] for r in script.requests] == ["job-42"] * 4
    assert len(sleep.delays) == 3 and sleep.delays[1] == 1.0


def test_a_plain_conflict_on_create_is_not_retried() -> None:
    script = Script(
        httpx.Response(409, json={"code": "ALREADY_EXISTS", "message": "EDM exists", "logId": "x1"})
    )
    with pytest.raises(Conflict) as info:
        run(make(script).create_edm("E", request_id="r"))
    assert info.value.service_code == "ALREADY_EXISTS" and len(script.requests) == 1


def test_an_accepted_answer_without_location_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(202))
    with pytest.raises(UnexpectedResponse):
        run(make(script).create_edm("E", request_id="r"))


def test_create_portfolio_sends_the_fields_and_returns_the_new_id() -> None:
    script = Script(
        httpx.Response(201, headers={"Location": f"{HOST}/riskmodeler/v2/portfolios/12"})
    )
    portfolio_id = run(
        make(script).create_portfolio("EDM_A", name="Florida", number="FL-1", request_id="p-1")
    )
    assert portfolio_id == "12"
    request = script.requests[0]
    assert request.url.path == "/riskmodeler/v2/portfolios" and query(request) == {
        "datasource": ["EDM_A"]
    }
    assert json.loads(request.content) == {"name": "Florida", "number": "FL-1", "description": ""}
    assert request.headers["x-rms-requestid"] == "p-1"


# ---------------------------------------------------------------------- workflows


def test_get_workflow_parses_the_workflow_and_its_status() -> None:
    script = Script(
        httpx.Response(200, json=workflow_json(4021, "FINISHED", output={"x": 1}, tenantName="t"))
    )
    workflow = run(make(script).get_workflow("4021"))
    assert isinstance(workflow, Workflow)
    assert (
        workflow.id == "4021" and workflow.job_status is JobStatus.FINISHED and workflow.is_terminal
    )
    assert workflow.output == {"x": 1} and workflow.progress == 40
    assert workflow.model_extra["tenantName"] == "t"
    assert script.requests[0].url.path == "/riskmodeler/v1/workflows/4021"


def test_a_workflow_answering_204_is_not_ready_yet() -> None:
    script = Script(httpx.Response(204))
    assert run(make(script).get_workflow("9")) is None


def test_null_collections_in_a_workflow_become_empty() -> None:
    workflow = Workflow.model_validate({"id": 1, "status": "QUEUED", "summary": None, "jobs": None})
    assert (workflow.summary, workflow.jobs, workflow.job_status) == ({}, [], JobStatus.QUEUED)


def test_an_unknown_workflow_status_is_noticed_not_guessed() -> None:
    with pytest.raises(IllegalTransition):
        _ = Workflow(id="1", status="TELEPORTED").job_status


def test_a_workflow_body_that_does_not_parse_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(200, json={"status": "RUNNING"}))
    with pytest.raises(UnexpectedResponse):
        run(make(script).get_workflow("1"))


def test_get_workflows_asks_in_chunks_and_keys_the_result_by_id() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        ids = query(request)["ids"][0].split(",")
        return httpx.Response(
            200,
            json={"totalMatchCount": len(ids), "workflows": [workflow_json(int(i)) for i in ids]},
        )

    script = Script(answer, answer, answer)
    ids = [str(i) for i in range(1, 8)] + ["3"]
    result = run(make(script).get_workflows(ids, chunk_size=3))
    assert sorted(result, key=int) == [str(i) for i in range(1, 8)]
    assert [query(r)["ids"][0] for r in script.requests] == ["1,2,3", "4,5,6", "7"]
    assert [query(r)["limit"][0] for r in script.requests] == ["3", "3", "1"]
    assert all(r.url.path == "/riskmodeler/v1/workflows" for r in script.requests)


def test_get_workflows_of_nothing_makes_no_call() -> None:
    assert run(make(Script()).get_workflows([])) == {}


def test_workflows_the_service_does_not_return_are_absent() -> None:
    script = Script(
        httpx.Response(200, json={"totalMatchCount": 1, "workflows": [workflow_json(1)]})
    )
    assert list(run(make(script).get_workflows(["1", "2"]))) == ["1"]


def test_cancel_workflow_sends_delete() -> None:
    script = Script(httpx.Response(202))
    run(make(script).cancel_workflow("33"))
    assert (script.requests[0].method, script.requests[0].url.path) == (
        "DELETE",
        "/riskmodeler/v1/workflows/33",
    )


def test_a_failing_poll_raises_the_server_error_after_retries() -> None:
    script = Script(
        *[httpx.Response(500, json={"code": "INT-500", "message": "oops", "logId": "L"})] * 2
    )
    with pytest.raises(ServerError) as info:
        run(make(script, retry=RetryPolicy(max_retries=1)).get_workflow("1"))
    assert info.value.log_id == "L" and KEY not in str(info.value)


# ---------------------------------------------------------------------- listings


def test_list_edms_returns_the_search_items_across_pages() -> None:
    def page(request: httpx.Request) -> httpx.Response:
        offset, limit = int(query(request)["offset"][0]), int(query(request)["limit"][0])
        names = [f"EDM{i}" for i in range(offset, min(offset + limit, 1500))]
        return httpx.Response(
            200, json={"totalMatchCount": 1500, "searchItems": [{"name": n} for n in names]}
        )

    script = Script(page, page)
    edms = run(make(script).list_edms())
    assert len(edms) == 1500 and edms[-1] == {"name": "EDM1499"}
    assert [query(r)["offset"][0] for r in script.requests] == ["0", "1000"]


def test_get_edm_returns_none_for_an_unknown_name() -> None:
    script = Script(
        httpx.Response(
            404, json={"code": "NOT_FOUND", "message": "no such datasource", "logId": "a"}
        ),
        httpx.Response(200, json={"name": "EDM A", "status": "AVAILABLE"}),
    )
    client = make(script)
    assert run(client.get_edm("nope")) is None
    assert run(client.get_edm("EDM A")) == {"name": "EDM A", "status": "AVAILABLE"}
    assert script.requests[1].url.raw_path == b"/riskmodeler/v2/datasources/EDM%20A"


def test_list_portfolios_asks_for_the_edm() -> None:
    script = Script(
        httpx.Response(
            200, json={"totalMatchCount": 1, "searchItems": [{"id": 1, "name": "P", "number": "1"}]}
        )
    )
    assert run(make(script).list_portfolios("EDM_A")) == [{"id": 1, "name": "P", "number": "1"}]
    assert query(script.requests[0])["datasource"] == ["EDM_A"]
    assert script.requests[0].url.path == "/riskmodeler/v2/portfolios"


def test_a_listing_without_its_items_list_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(200, json={"totalMatchCount": 2, "items": [{}, {}]}))
    with pytest.raises(UnexpectedResponse):
        run(make(script).list_edms())


def test_an_empty_listing_may_leave_the_items_out() -> None:
    assert run(make(Script(httpx.Response(200, json={"totalMatchCount": 0}))).list_edms()) == []
