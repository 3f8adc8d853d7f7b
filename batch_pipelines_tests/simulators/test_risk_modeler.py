"""The Risk Modeler simulator behaves like the service the engine has to survive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from batch_pipelines.core.statuses import JobStatus, job_status_from_service
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines_tests.simulators.helpers import FakeClock, client_for

pytestmark = pytest.mark.anyio

KEY = {"Authorization": "sim-key"}
DATASOURCES = "/riskmodeler/v2/datasources"
PORTFOLIOS = "/riskmodeler/v2/portfolios"
WORKFLOWS = "/riskmodeler/v1/workflows"
# 1 s per phase with the fake clock: finished 3 s after submission.
STEPS = (1.0, 1.0, 1.0)


def create_edm(client: httpx.AsyncClient, name: str, request_id: str | None = None):
    headers = {"x-rms-requestid": request_id} if request_id else {}
    return client.post(
        DATASOURCES,
        params={"datasourcename": name, "servername": "databridge-1", "operation": "CREATE"},
        headers=headers,
    )


def workflow_id(response: httpx.Response) -> int:
    return int(response.headers["location"].rsplit("/", 1)[1])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rm.sqlite"


async def test_an_edm_creation_moves_through_queued_pending_running_to_finished_and_then_the_edm_exists(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        created = await create_edm(client, "EDM_A")
        assert created.status_code == 202
        assert created.headers["location"] == f"{WORKFLOWS}/{workflow_id(created)}"
        seen = []
        for _ in range(4):
            wf = (await client.get(created.headers["location"])).json()
            seen.append(wf["status"])
            edm = await client.get(f"{DATASOURCES}/EDM_A")
            assert (edm.status_code == 200) == (wf["status"] == "FINISHED")
            clock.advance(1.0)
        assert seen == ["QUEUED", "PENDING", "RUNNING", "FINISHED"]
        assert wf["type"] == "EDM_CREATION" and wf["progress"] == 100 and wf["endTime"]
        assert wf["jobs"][0]["status"] == "Succeeded"
        assert job_status_from_service(wf["jobs"][0]["status"]) is JobStatus.FINISHED
        listed = (await client.get(DATASOURCES)).json()
        assert listed["totalMatchCount"] == 1
        assert listed["searchItems"][0]["name"] == "EDM_A"


async def test_inner_job_words_differ_from_workflow_statuses_but_map_back_to_them(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        location = (await create_edm(client, "EDM_W")).headers["location"]
        for _ in range(4):
            wf = (await client.get(location)).json()
            assert job_status_from_service(wf["jobs"][0]["status"]) == JobStatus(wf["status"])
            clock.advance(1.0)


async def test_a_failure_rate_of_one_ends_the_workflow_failed_with_an_error_message_and_no_edm(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(
        db, workflow_seconds=STEPS, clock=clock, faults=FaultPlan(workflow_failure_rate=1.0)
    )
    async with client_for(sim.app, **KEY) as client:
        location = (await create_edm(client, "EDM_F")).headers["location"]
        running = (await client.get(location)).json()
        assert running["status"] == "QUEUED" and running["messages"] == []
        clock.advance(5.0)
        wf = (await client.get(location)).json()
        assert wf["status"] == "FAILED"
        assert wf["messages"][0]["type"] == "ERROR" and "EDM_F" in wf["messages"][0]["message"]
        assert (await client.get(f"{DATASOURCES}/EDM_F")).status_code == 404
        # A failed creation leaves the name free for a new attempt.
        assert (await create_edm(client, "EDM_F")).status_code == 202
    assert sim.stats()["faults_injected"]["workflow_failed"] == 2


async def test_the_same_request_id_replays_the_stored_answer_and_counts_one_acceptance(db: Path):
    sim = RiskModelerSimulator(db, workflow_seconds=(0.01, 0.01, 0.01))
    async with client_for(sim.app, **KEY) as client:
        first = await create_edm(client, "EDM_R", request_id="req-1")
        second = await create_edm(client, "EDM_R", request_id="req-1")
        assert first.status_code == second.status_code == 202
        assert first.headers["location"] == second.headers["location"]
        assert second.headers["x-sim-replay"] == "true"
        portfolio = {"name": "P1", "number": "1", "description": "d"}
        await asyncio.sleep(0.05)
        made = await client.post(
            PORTFOLIOS,
            params={"datasource": "EDM_R"},
            json=portfolio,
            headers={"x-rms-requestid": "req-2"},
        )
        again = await client.post(
            PORTFOLIOS,
            params={"datasource": "EDM_R"},
            json=portfolio,
            headers={"x-rms-requestid": "req-2"},
        )
        assert made.status_code == again.status_code == 201
        assert made.json() == again.json()
        assert made.headers["location"] == again.headers["location"]
    stats = sim.stats()
    assert stats["accepted_total"] == 2
    assert stats["replays_total"] == 2
    assert stats["accepted_per_request_id_max"] == 1
    assert stats["duplicate_acceptances"] == []


async def test_a_duplicate_sent_while_the_first_is_still_processing_gets_request_in_progress(
    db: Path,
):
    sim = RiskModelerSimulator(db, faults=FaultPlan(latency_seconds=0.1))
    async with client_for(sim.app, **KEY) as client:
        first, second = await asyncio.gather(
            create_edm(client, "EDM_D", request_id="dup"),
            create_edm(client, "EDM_D", request_id="dup"),
        )
        assert sorted([first.status_code, second.status_code]) == [202, 409]
        conflict = first if first.status_code == 409 else second
        assert conflict.json()["code"] == "REQUEST_IN_PROGRESS"
        later = await create_edm(client, "EDM_D", request_id="dup")
        assert later.status_code == 202 and later.headers["x-sim-replay"] == "true"
    assert sim.stats()["accepted_total"] == 1


async def test_state_survives_constructing_a_new_simulator_on_the_same_db_file(
    db: Path, clock: FakeClock
):
    first = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(first.app, **KEY) as client:
        location = (await create_edm(client, "EDM_S", request_id="keep")).headers["location"]
    first.close()

    clock.advance(10.0)
    second = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(second.app, **KEY) as client:
        assert (await client.get(location)).json()["status"] == "FINISHED"
        assert (await client.get(f"{DATASOURCES}/EDM_S")).status_code == 200
        replay = await create_edm(client, "EDM_S", request_id="keep")
        assert replay.status_code == 202 and replay.headers["location"] == location
    stats = second.stats()
    assert stats["accepted_total"] == 1 and stats["replays_total"] == 1


async def test_the_same_key_from_two_simulators_sharing_a_file_is_accepted_once(db: Path):
    one, two = RiskModelerSimulator(db), RiskModelerSimulator(db)
    async with client_for(one.app, **KEY) as a, client_for(two.app, **KEY) as b:
        first = await create_edm(a, "EDM_X", request_id="shared")
        second = await create_edm(b, "EDM_X", request_id="shared")
    assert first.headers["location"] == second.headers["location"]
    assert two.stats()["accepted_per_request_id_max"] == 1


async def test_server_errors_and_rate_limits_are_answered_before_anything_is_accepted(
    db: Path, tmp_path: Path
):
    errors = RiskModelerSimulator(db, faults=FaultPlan(seed=3, server_error_rate=1.0))
    async with client_for(errors.app, **KEY) as client:
        answers = [await create_edm(client, "EDM_E", request_id="e") for _ in range(6)]
        assert {r.status_code for r in answers} <= {500, 502, 503}
        assert all(set(r.json()) == {"code", "message", "logId"} for r in answers)
        assert (await client.get(WORKFLOWS)).status_code in {500, 502, 503}
    stats = errors.stats()
    assert stats["accepted_total"] == 0 and stats["workflows_by_status"] == {}
    assert sum(stats["faults_injected"].values()) == 7

    limited = RiskModelerSimulator(
        tmp_path / "limited.sqlite", faults=FaultPlan(rate_limit_rate=1.0, retry_after_seconds=0.25)
    )
    async with client_for(limited.app, **KEY) as client:
        answer = await create_edm(client, "EDM_E", request_id="e")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "0.25"
    assert limited.stats()["accepted_total"] == 0
    assert limited.stats()["faults_injected"] == {"rate_limited": 1}


async def test_the_same_seed_injects_the_same_faults_in_the_same_order(db: Path, tmp_path: Path):
    async def statuses(path: Path) -> list[int]:
        sim = RiskModelerSimulator(
            path, faults=FaultPlan(seed=42, server_error_rate=0.3, rate_limit_rate=0.2)
        )
        async with client_for(sim.app, **KEY) as client:
            return [(await client.get(DATASOURCES)).status_code for _ in range(30)]

    first, second = await statuses(db), await statuses(tmp_path / "other.sqlite")
    assert first == second
    assert {200, 429} <= set(first) and set(first) & {500, 502, 503}


async def test_a_slow_answer_is_accepted_first_so_a_retry_during_the_delay_gets_a_replay(db: Path):
    sim = RiskModelerSimulator(db, faults=FaultPlan(slow_rate=1.0, slow_seconds=0.5))
    async with client_for(sim.app, **KEY) as client:
        original = asyncio.create_task(create_edm(client, "EDM_SLOW", request_id="slow"))
        while sim.stats()["accepted_total"] == 0:
            await asyncio.sleep(0.005)
        # The client "timed out" and retries while the original answer is still delayed;
        # replays are not slowed, so the retry is answered first.
        retry = await create_edm(client, "EDM_SLOW", request_id="slow")
        assert not original.done()
        assert retry.status_code == 202 and retry.headers["x-sim-replay"] == "true"
        first = await original
        assert first.headers["location"] == retry.headers["location"]
    stats = sim.stats()
    assert stats["accepted_total"] == 1 and stats["replays_total"] == 1
    assert stats["faults_injected"] == {"slow": 1}


async def test_delete_cancels_an_unfinished_workflow_and_refuses_a_finished_one(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        location = (await create_edm(client, "EDM_C")).headers["location"]
        clock.advance(2.5)  # RUNNING
        cancel = await client.delete(location)
        assert cancel.status_code == 202
        seen = []
        for _ in range(3):
            seen.append((await client.get(location)).json()["status"])
            clock.advance(1.0)
        assert seen == ["CANCEL_REQUESTED", "CANCELLING", "CANCELLED"]
        clock.advance(10.0)
        assert (await client.get(location)).json()["status"] == "CANCELLED"
        assert (await client.get(f"{DATASOURCES}/EDM_C")).status_code == 404
        refused = await client.delete(location)
        assert refused.status_code == 409 and refused.json()["code"] == "WORKFLOW_NOT_CANCELLABLE"

        done = (await create_edm(client, "EDM_C2")).headers["location"]
        clock.advance(5.0)
        assert (await client.delete(done)).status_code == 409
        assert (await client.delete(f"{WORKFLOWS}/999")).status_code == 404
    stats = sim.stats()
    assert stats["accepted_total"] == 2  # the two creations; a cancel submits nothing
    assert stats["workflows_by_status"] == {"CANCELLED": 1, "FINISHED": 1}


async def test_workflows_are_listed_by_ids_with_status_filter_and_paging(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        ids = []
        for i in range(4):
            ids.append(workflow_id(await create_edm(client, f"EDM_L{i}")))
            clock.advance(1.0)
        # Ages 4, 3, 2 and 1 s: FINISHED, FINISHED, RUNNING, PENDING.
        wanted = ",".join(str(i) for i in ids[:3])
        page = (await client.get(WORKFLOWS, params={"ids": wanted, "limit": 2, "offset": 1})).json()
        assert page["totalMatchCount"] == 3
        assert [wf["id"] for wf in page["workflows"]] == ids[1:3]
        finished = (
            await client.get(WORKFLOWS, params={"ids": wanted, "status": "FINISHED"})
        ).json()
        assert [wf["id"] for wf in finished["workflows"]] == ids[:2]
        running = (await client.get(WORKFLOWS, params={"status": "RUNNING,PENDING"})).json()
        assert [wf["id"] for wf in running["workflows"]] == ids[2:]
        assert (await client.get(WORKFLOWS)).json()["totalMatchCount"] == 4
        assert (await client.get(WORKFLOWS, params={"ids": "1,x"})).status_code == 400
        assert (await client.get(f"{WORKFLOWS}/12345")).status_code == 404


@pytest.mark.parametrize("authorization", [None, "wrong", "Bearer sim-key"])
async def test_a_missing_wrong_or_bearer_api_key_is_refused_with_401(
    db: Path, authorization: str | None
):
    sim = RiskModelerSimulator(db)
    headers = {"Authorization": authorization} if authorization else {}
    async with client_for(sim.app, **headers) as client:
        answer = await client.get(DATASOURCES)
        created = await create_edm(client, "EDM_AUTH")
    assert answer.status_code == created.status_code == 401
    assert set(answer.json()) == {"code", "message", "logId"}
    assert sim.stats()["accepted_total"] == 0


async def test_portfolios_are_created_synchronously_validated_and_unique_per_edm(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        body = {"name": "Book A", "number": "A-1", "description": "first"}
        missing = await client.post(PORTFOLIOS, params={"datasource": "EDM_P"}, json=body)
        assert missing.status_code == 404
        await create_edm(client, "EDM_P")
        clock.advance(3.0)
        made = await client.post(PORTFOLIOS, params={"datasource": "EDM_P"}, json=body)
        assert made.status_code == 201
        portfolio = made.json()
        assert made.headers["location"] == f"{PORTFOLIOS}/{portfolio['id']}?datasource=EDM_P"
        assert (portfolio["name"], portfolio["number"]) == ("Book A", "A-1")
        assert (await client.get(made.headers["location"])).json() == portfolio
        duplicate = await client.post(PORTFOLIOS, params={"datasource": "EDM_P"}, json=body)
        assert duplicate.status_code == 409
        too_long = await client.post(
            PORTFOLIOS, params={"datasource": "EDM_P"}, json={**body, "name": "n" * 41}
        )
        assert too_long.status_code == 400
        long_number = await client.post(
            PORTFOLIOS,
            params={"datasource": "EDM_P"},
            json={**body, "name": "Book B", "number": "9" * 21},
        )
        assert long_number.status_code == 400
        listed = (await client.get(PORTFOLIOS, params={"datasource": "EDM_P"})).json()
        assert listed["totalMatchCount"] == 1 and listed["searchItems"][0]["id"] == portfolio["id"]
    assert sim.stats()["accepted_total"] == 2  # the EDM and one portfolio


async def test_edm_creation_conflicts_and_bad_parameters_and_upgrade_sets_the_new_data_version(
    db: Path, clock: FakeClock
):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)
    async with client_for(sim.app, **KEY) as client:
        assert (await create_edm(client, "EDM_U")).status_code == 202
        pending = await create_edm(client, "EDM_U")
        assert pending.status_code == 409 and pending.json()["code"] == "DATASOURCE_EXISTS"
        unknown_server = await client.post(
            DATASOURCES, params={"datasourcename": "E", "servername": "nope", "operation": "CREATE"}
        )
        assert unknown_server.status_code == 400
        assert (await client.post(DATASOURCES, params={"operation": "CREATE"})).status_code == 400
        upgrade = {
            "datasourcename": "EDM_U",
            "servername": "databridge-1",
            "operation": "EDM_DATA_UPGRADE",
        }
        assert (
            await client.post(DATASOURCES, params=upgrade)
        ).status_code == 404  # not created yet
        clock.advance(3.0)
        assert (await create_edm(client, "EDM_U")).status_code == 409
        before = (await client.get(f"{DATASOURCES}/EDM_U")).json()["dataVersion"]
        started = await client.post(DATASOURCES, params=upgrade)
        assert started.status_code == 202
        clock.advance(3.0)
        wf = (await client.get(started.headers["location"])).json()
        assert (wf["type"], wf["status"]) == ("EDM_DATA_UPGRADE", "FINISHED")
        after = (await client.get(f"{DATASOURCES}/EDM_U")).json()["dataVersion"]
        assert (before, after) == ("21", "22")


async def test_reset_forgets_state_and_counters_but_never_reuses_workflow_ids(db: Path):
    sim = RiskModelerSimulator(db)
    async with client_for(sim.app, **KEY) as client:
        old = workflow_id(await create_edm(client, "EDM_Z"))
        assert (await client.post("/_sim/reset")).status_code == 200
        stats = (await client.get("/_sim/stats")).json()
        assert stats["accepted_total"] == 0 and stats["workflows_by_status"] == {}
        assert (await client.get(f"{WORKFLOWS}/{old}")).status_code == 404
        assert workflow_id(await create_edm(client, "EDM_Z")) > old


async def test_workflows_finish_in_real_time_with_small_durations(db: Path):
    sim = RiskModelerSimulator(db, workflow_seconds=(0.01, 0.01, 0.01))
    async with client_for(sim.app, **KEY) as client:
        location = (await create_edm(client, "EDM_T")).headers["location"]
        for _ in range(100):
            wf = (await client.get(location)).json()
            if wf["status"] == "FINISHED":
                break
            await asyncio.sleep(0.01)
        assert wf["status"] == "FINISHED"
        assert sim.stats()["workflows_by_status"] == {"FINISHED": 1}


def test_constructing_a_simulator_does_not_touch_the_disk(tmp_path: Path):
    RiskModelerSimulator(tmp_path / "nested" / "rm.sqlite")
    assert not (tmp_path / "nested").exists()


def test_one_simulator_can_be_driven_from_successive_event_loops(db: Path, clock: FakeClock):
    sim = RiskModelerSimulator(db, workflow_seconds=STEPS, clock=clock)

    async def call(method: str, url: str, **kwargs) -> httpx.Response:
        async with client_for(sim.app, **KEY) as client:
            return await client.request(method, url, **kwargs)

    create = {"datasourcename": "EDM_LOOPS", "servername": "databridge-1", "operation": "CREATE"}
    assert asyncio.run(call("POST", DATASOURCES, params=create)).status_code == 202
    clock.advance(3.0)
    # This read applies the finished workflow's effect: a write scheduled on this loop only.
    assert asyncio.run(call("GET", f"{DATASOURCES}/EDM_LOOPS")).status_code == 200
    made = asyncio.run(
        call(
            "POST",
            PORTFOLIOS,
            params={"datasource": "EDM_LOOPS"},
            json={"name": "P", "number": "1"},
        )
    )
    assert made.status_code == 201
    sim.close()
    assert RiskModelerSimulator(db).stats()["accepted_total"] == 2
