"""The Risk Modeler client's calls for every batch type, against the in-process simulator."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from batch_pipelines.clients.http import BadRequest, Conflict, ResourceNotFound
from batch_pipelines.clients.risk_modeler import RiskModelerClient
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator

EDM = "RM_EDM_202503_Client"


@pytest.fixture
def sim(tmp_path):
    simulator = RiskModelerSimulator(tmp_path / "rm.db", workflow_seconds=(0.0, 0.0, 0.0))
    yield simulator
    simulator.close()


def run(sim, scenario):
    async def go():
        async with risk_modeler_client(sim) as client:
            return await scenario(client)

    return asyncio.run(go())


async def _edm_with_portfolio(client: RiskModelerClient) -> str:
    await client.create_edm(EDM, request_id="edm")
    return await client.create_portfolio(EDM, name="P1", number="1", request_id="pf")


async def _analysis(client: RiskModelerClient, portfolio_id: str, name: str = "A1") -> int:
    ids = {
        k: (await client.list_reference_data(k, ["x"]))[0]["id"]
        for k in ("model-profiles", "output-profiles")
    }
    await client.submit_analysis(
        portfolio_id,
        {
            "edm": EDM,
            "jobName": name,
            "modelProfileId": ids["model-profiles"],
            "outputProfileId": ids["output-profiles"],
        },
        request_id=f"an-{name}",
    )
    return (await client.list_analyses(names=[name]))[0]["id"]


def test_edm_upgrade_records_the_target_data_version(sim):
    async def scenario(client):
        await client.create_edm(EDM, request_id="e")
        workflow_id = await client.upgrade_edm(EDM, edm_data_version="23", request_id="u")
        return await client.get_workflow(workflow_id), await client.get_edm(EDM)

    workflow, edm = run(sim, scenario)
    assert workflow.type == "EDM_DATA_UPGRADE" and workflow.status == "FINISHED"
    assert edm["dataVersion"] == "23"


def test_the_mri_import_flow_uploads_both_files_and_counts_their_rows(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        bucket = await client.create_storage_bucket(request_id="b")
        accounts = await client.create_storage_file(
            bucket, file_name="a.csv", file_size=12, file_type="account", request_id="fa"
        )
        locations = await client.create_storage_file(
            bucket, file_name="l.csv", file_size=12, file_type="location", request_id="fl"
        )
        await client.upload_file(accounts.upload_url, b"ACC\n1\n2\n3\n")
        await client.upload_file(locations.upload_url, b"LOC\n1\n\n")
        mapping = await client.create_import_mapping(bucket, request_id="m")
        workflow_id = await client.submit_mri_import(
            bucket_id=bucket,
            edm=EDM,
            portfolio_id=portfolio_id,
            accounts_file_id=accounts.id,
            locations_file_id=locations.id,
            mapping_file_id=mapping,
            request_id="i",
        )
        return await client.get_workflow(workflow_id), await client.get_portfolio(EDM, portfolio_id)

    workflow, portfolio = run(sim, scenario)
    assert workflow.type == "MRI_IMPORT" and workflow.summary == {
        "importSummary": "Imported 3 Accounts and 1 Locations"
    }
    assert (portfolio["accountsCount"], portfolio["locationsCount"]) == (3, 1)


def test_an_import_of_a_file_never_uploaded_is_refused(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        bucket = await client.create_storage_bucket(request_id="b")
        accounts = await client.create_storage_file(
            bucket, file_name="a", file_size=1, file_type="account", request_id="fa"
        )
        locations = await client.create_storage_file(
            bucket, file_name="l", file_size=1, file_type="location", request_id="fl"
        )
        await client.upload_file(accounts.upload_url, b"h\n1\n")
        mapping = await client.create_import_mapping(bucket, request_id="m")
        await client.submit_mri_import(
            bucket_id=bucket,
            edm=EDM,
            portfolio_id=portfolio_id,
            accounts_file_id=accounts.id,
            locations_file_id=locations.id,
            mapping_file_id=mapping,
            request_id="i",
        )

    with pytest.raises(BadRequest, match="has not been uploaded"):
        run(sim, scenario)


def test_treaties_are_created_with_lines_of_business_and_listed_per_edm(sim):
    async def scenario(client):
        await client.create_edm(EDM, request_id="e")
        treaty_id = await client.create_treaty(
            EDM, {"name": "T1", "number": "1", "treatyType": "Quota Share"}, request_id="t"
        )
        lines = await client.add_treaty_lines_of_business(
            EDM, [{"treatyId": int(treaty_id), "name": "ALL"}], request_id="l"
        )
        with pytest.raises(Conflict):
            await client.create_treaty(
                EDM, {"name": "T1", "number": "2", "treatyType": "Quota Share"}, request_id="t2"
            )
        return lines, await client.list_treaties(EDM)

    lines, treaties = run(sim, scenario)
    assert lines == [{"id": 1, "treatyId": 1, "name": "ALL"}]
    assert [(t["name"], t["treatyType"], t["lobs"]) for t in treaties] == [
        ("T1", "Quota Share", [{"id": 1, "name": "ALL"}])
    ]


def test_geohaz_marks_the_portfolio_geocoded(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        layers = [
            {"name": "geocode", "type": "geocode", "engineType": "RL", "version": "23.0"},
            {"name": "eq", "type": "hazard", "engineType": "RL", "version": "23.0"},
        ]
        workflow_id = await client.submit_geohaz(EDM, portfolio_id, layers, request_id="g")
        return await client.get_workflow(workflow_id), await client.get_portfolio(EDM, portfolio_id)

    workflow, portfolio = run(sim, scenario)
    assert workflow.type == "GEOHAZ" and portfolio["geocoded"] is True


def test_an_analysis_on_a_missing_portfolio_is_not_found(sim):
    async def scenario(client):
        await _edm_with_portfolio(client)
        await client.submit_analysis(
            "999",
            {"edm": EDM, "jobName": "A", "modelProfileId": 1, "outputProfileId": 1},
            request_id="a",
        )

    with pytest.raises(ResourceNotFound, match="Portfolio 999"):
        run(sim, scenario)


def test_analyses_are_created_named_listed_by_name_and_deleted(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        first = await _analysis(client, portfolio_id, "A1")
        await _analysis(client, portfolio_id, "A2")
        named = await client.list_analyses(names=["A2"])
        await client.delete_analysis(first)
        return first, named, await client.list_analyses()

    first, named, remaining = run(sim, scenario)
    assert isinstance(first, int) and [a["name"] for a in named] == ["A2"]
    assert [a["name"] for a in remaining] == ["A2"]


def test_a_group_can_be_an_item_of_a_rollup_and_unknown_ids_are_refused(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        analysis = await _analysis(client, portfolio_id)
        await client.create_analysis_group("G1", [analysis], request_id="g1")
        group = (await client.list_analysis_groups(names=["G1"]))[0]["id"]
        await client.create_analysis_group("R1", [group, analysis], request_id="r1")
        rollup = (await client.list_analysis_groups(names=["R1"]))[0]
        with pytest.raises(ResourceNotFound, match="4242"):
            await client.create_analysis_group("BAD", [4242], request_id="bad")
        await client.delete_analysis_group(group)
        return rollup, await client.list_analysis_groups()

    rollup, groups = run(sim, scenario)
    assert rollup["isGroup"] and len(rollup["analysisIds"]) == 2
    assert [g["name"] for g in groups] == ["R1"]


def test_the_first_export_creates_the_rdm_and_later_ones_join_it_by_database_id(sim):
    async def scenario(client):
        portfolio_id = await _edm_with_portfolio(client)
        a1, a2 = (
            await _analysis(client, portfolio_id, "A1"),
            await _analysis(client, portfolio_id, "A2"),
        )
        server = (await client.list_data_servers())[0]["id"]
        await client.submit_rdm_export([a1], server_id=server, rdm_name="RDM1", request_id="x1")
        with pytest.raises(Conflict, match="RDM1"):
            await client.submit_rdm_export([a2], server_id=server, rdm_name="RDM1", request_id="x2")
        rdm = (await client.list_rdms())[0]
        await client.submit_rdm_export(
            [a2], server_id=server, database_id=rdm["databaseId"], request_id="x3"
        )
        with pytest.raises(ResourceNotFound):
            await client.submit_rdm_export([a2], server_id=server, database_id=999, request_id="x4")
        return await client.list_rdms()

    assert [(r["name"], r["analysisCount"]) for r in run(sim, scenario)] == [("RDM1", 2)]


def test_reference_data_given_to_the_simulator_is_the_only_data_known(tmp_path):
    sim = RiskModelerSimulator(
        tmp_path / "ref.db", reference_data={"model_profiles": ["DLM A", "DLM B"]}
    )

    async def scenario(client):
        return (
            await client.list_reference_data("model-profiles"),
            await client.list_reference_data("model-profiles", ["DLM B", "nope"]),
            await client.list_reference_data("output-profiles", ["x"]),
        )

    every, some, none = run(sim, scenario)
    sim.close()
    assert (
        [p["name"] for p in every] == ["DLM A", "DLM B"]
        and some == [{"id": 2, "name": "DLM B"}]
        and none == []
    )


def test_every_new_post_sends_the_request_id_and_the_documented_body():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if (
            request.url.path.endswith("/process")
            or "geohaz" in request.url.path
            or request.url.path.endswith(("/imports", "/analysis-groups", "/jobs"))
        ):
            return httpx.Response(202, headers={"Location": "/riskmodeler/v1/workflows/7"})
        if request.url.path.endswith("/path"):
            return httpx.Response(201, json={"id": 5, "uploadUrl": "/_sim/storage/1/5"})
        if request.url.path.endswith("/lob/batch"):
            return httpx.Response(201, json={"searchItems": []})
        return httpx.Response(201, headers={"Location": "/x/9"})

    client = RiskModelerClient("https://rm.example", "k", transport=httpx.MockTransport(answer))

    async def calls():
        await client.create_storage_bucket(request_id="r1")
        await client.create_storage_file(
            "1", file_name="a.csv", file_size=3, file_type="account", request_id="r2"
        )
        await client.create_import_mapping("1", request_id="r3")
        await client.submit_mri_import(
            bucket_id="1",
            edm="E",
            portfolio_id="2",
            accounts_file_id="5",
            locations_file_id="6",
            mapping_file_id="7",
            request_id="r4",
        )
        await client.create_treaty("E", {"name": "T"}, request_id="r5")
        await client.add_treaty_lines_of_business(
            "E", [{"treatyId": 9, "name": "ALL"}], request_id="r6"
        )
        await client.submit_geohaz("E", "2", [{"type": "geocode"}], request_id="r7")
        await client.submit_analysis("2", {"edm": "E", "jobName": "A"}, request_id="r8")
        await client.create_analysis_group("G", ["3", "4"], request_id="r9")
        await client.submit_rdm_export(["3"], server_id=1, rdm_name="R", request_id="r10")
        await client.aclose()

    asyncio.run(calls())
    assert [r.headers["x-rms-requestid"] for r in seen] == [f"r{i}" for i in range(1, 11)]
    bodies = {r.url.path: json.loads(r.content or b"null") for r in seen}
    assert bodies["/riskmodeler/v1/imports"] == {
        "importType": "MRI",
        "bucketId": 1,
        "dataSourceName": "E",
        "accountsFileId": 5,
        "locationsFileId": 6,
        "mappingFileId": 7,
        "delimiter": "COMMA",
        "skipLines": 1,
        "currency": "USD",
        "portfolioId": 2,
        "appendLocations": False,
    }
    assert bodies["/riskmodeler/v2/portfolios/2/process"] == {
        "id": 2,
        "exposureType": "PORTFOLIO",
        "edm": "E",
        "jobName": "A",
    }
    assert bodies["/riskmodeler/v2/analysis-groups"]["analysisIds"] == [3, 4]
    assert bodies["/platform/export/v1/jobs"] == {
        "exportType": "RDM_DATABRIDGE",
        "resourceType": "analyses",
        "resourceUris": ["/platform/riskdata/v1/analyses/3"],
        "settings": {"serverId": 1, "rdmName": "R"},
    }
    assert seen[0].headers["authorization"] == "k"
