"""The simulator's routes for MRI import, treaties, GeoHaz, analyses, groups and exports."""

from __future__ import annotations

import sqlite3

import pytest

from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines_tests.simulators.helpers import client_for

pytestmark = pytest.mark.anyio
AUTH = {"authorization": "sim-key"}


async def _edm_and_portfolio(http, clock) -> int:
    await http.post(
        "/riskmodeler/v2/datasources",
        params={"datasourcename": "E", "servername": "databridge-1", "operation": "CREATE"},
    )
    clock.advance(10)
    answer = await http.post(
        "/riskmodeler/v2/portfolios", params={"datasource": "E"}, json={"name": "P", "number": "1"}
    )
    return answer.json()["id"]


async def test_a_geohaz_on_a_missing_portfolio_is_404_in_the_service_error_shape(tmp_path, clock):
    sim = RiskModelerSimulator(tmp_path / "rm.db", clock=clock)
    async with client_for(sim.app, **AUTH) as http:
        await _edm_and_portfolio(http, clock)
        answer = await http.post(
            "/riskmodeler/v2/portfolios/77/geohaz",
            params={"datasource": "E"},
            json=[{"type": "geocode"}],
        )
    assert answer.status_code == 404 and set(answer.json()) == {"code", "message", "logId"}
    assert answer.json()["code"] == "PORTFOLIO_NOT_FOUND"


async def test_an_analysis_naming_a_treaty_of_another_edm_is_refused(tmp_path, clock):
    sim = RiskModelerSimulator(tmp_path / "rm.db", clock=clock)
    async with client_for(sim.app, **AUTH) as http:
        pf = await _edm_and_portfolio(http, clock)
        answer = await http.post(
            f"/riskmodeler/v2/portfolios/{pf}/process",
            json={
                "edm": "E",
                "jobName": "A",
                "modelProfileId": 1,
                "outputProfileId": 1,
                "treaties": [5],
            },
        )
    assert answer.status_code == 404 and answer.json()["code"] == "TREATY_NOT_FOUND"


async def test_a_second_seed_export_while_the_first_still_runs_is_a_conflict(tmp_path, clock):
    sim = RiskModelerSimulator(tmp_path / "rm.db", clock=clock)
    async with client_for(sim.app, **AUTH) as http:
        pf = await _edm_and_portfolio(http, clock)
        await http.post(
            f"/riskmodeler/v2/portfolios/{pf}/process",
            json={"edm": "E", "jobName": "A", "modelProfileId": 1, "outputProfileId": 1},
        )
        clock.advance(10)
        body = {
            "exportType": "RDM_DATABRIDGE",
            "resourceType": "analyses",
            "resourceUris": ["/x/1"],
            "settings": {"serverId": 1, "rdmName": "R"},
        }
        first = await http.post("/platform/export/v1/jobs", json=body)
        second = await http.post("/platform/export/v1/jobs", json=body)
        polled = await http.get(first.headers["location"])
    assert first.status_code == 202 and first.headers["location"].startswith(
        "/platform/export/v1/jobs/"
    )
    assert second.status_code == 409 and second.json()["code"] == "RDM_EXISTS"
    assert polled.json()["type"] == "EXPORT"


async def test_fault_injection_applies_to_the_new_routes(tmp_path, clock):
    sim = RiskModelerSimulator(
        tmp_path / "rm.db", clock=clock, faults=FaultPlan(seed=1, server_error_rate=1.0)
    )
    async with client_for(sim.app, **AUTH) as http:
        answers = [
            await http.post("/riskmodeler/v1/storage", json={}),
            await http.post("/riskmodeler/v1/treaties", params={"datasource": "E"}, json={}),
            await http.get("/riskmodeler/v2/analyses"),
            await http.post("/platform/export/v1/jobs", json={}),
        ]
    assert all(a.status_code in (500, 502, 503) for a in answers)
    assert sum(sim.stats()["faults_injected"].values()) == 4


async def test_a_file_from_an_older_simulator_gains_the_new_portfolio_columns(tmp_path, clock):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE portfolios (id INTEGER PRIMARY KEY AUTOINCREMENT, datasource TEXT NOT NULL, name TEXT NOT NULL, "
        "number TEXT NOT NULL, description TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (datasource, name))"
    )
    conn.execute(
        "INSERT INTO portfolios (datasource, name, number, description, created_at) VALUES ('E', 'P', '1', '', 0)"
    )
    conn.commit()
    conn.close()
    sim = RiskModelerSimulator(path, clock=clock)
    sim.stats()  # opens the file
    columns = [row[1] for row in sim._db().execute("PRAGMA table_info(portfolios)")]
    sim.close()
    assert columns[-4:] == ["accounts_count", "locations_count", "geocoded", "geohaz_versions"]


async def test_a_sub_portfolio_written_straight_into_the_table_is_listed(tmp_path, clock):
    """Portfolio Mapping writes sub-portfolios into the portfolios table as Data Bridge does."""
    sim = RiskModelerSimulator(tmp_path / "rm.db", clock=clock)
    async with client_for(sim.app, **AUTH) as http:
        await _edm_and_portfolio(http, clock)
        sim.close()
        conn = sqlite3.connect(tmp_path / "rm.db")
        conn.execute(
            "INSERT INTO portfolios (datasource, name, number, description, created_at) VALUES ('E', 'P_SUB', 'S', '', 0)"
        )
        conn.commit()
        conn.close()
        listed = await http.get("/riskmodeler/v2/portfolios", params={"datasource": "E"})
    sim.close()
    assert [(p["name"], p["accountsCount"]) for p in listed.json()["searchItems"]] == [
        ("P", 0),
        ("P_SUB", 0),
    ]
