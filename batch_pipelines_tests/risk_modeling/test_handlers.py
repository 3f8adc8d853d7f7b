"""The Risk Modeler handlers, submitting and tracking against the in-process simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.engine.executor import EngineOptions, run_batch
from batch_pipelines.engine.handlers import JobHandler
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.handlers import (
    HANDLERS,
    ExportToRdmHandler,
    MissingReference,
    MriImportHandler,
    NotReady,
    handler_for,
    step_request_id,
)
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore

FAST = EngineOptions(
    concurrency=4,
    poll_interval_seconds=0.02,
    poll_max_interval_seconds=0.05,
    control_check_seconds=0.05,
)
EDM = "RM_EDM_202503_Test"
CYCLE = "202503_Test"
RDM = "RM_RDM_202503_Test"


def _treaty(name: str) -> dict[str, Any]:
    return {
        "key": f"{EDM}:{name}",
        "edm_name": EDM,
        "treaty_name": name,
        "treaty_number": name,
        "treaty_type": "Working Excess",
        "per_risk_limit": 3_000_000.0,
        "occurrence_limit": 9_000_000.0,
        "attachment_point": 2_000_000.0,
        "inception_date": "2025-01-01",
        "expiration_date": "2025-12-31",
        "currency": "US Dollar",
        "attachment_basis": "Losses Occurring",
        "exposure_level": "Location",
        "percent_covered": 100.0,
        "percent_placed": 95.0,
        "percent_share": 100.0,
        "percent_retention": 100.0,
        "premium": 0.0,
        "reinstatements": 99,
        "percent_reinstatement_charge": 0.0,
        "aggregate_limit": 0.0,
        "aggregate_deductible_amount": 0.0,
        "inuring_priority": 1,
        "producer": None,
        "tags": None,
    }


def _base(name: str) -> dict[str, Any]:
    return {"key": name, "edm_name": EDM, "portfolio_name": name, "import_file": name}


def _csv_job(name: str) -> dict[str, Any]:
    return {
        **_base(name),
        "date_value": "202503",
        "account_csv": f"Modeling_202503_Moodys_{name}_Account.csv",
        "location_csv": f"Modeling_202503_Moodys_{name}_Location.csv",
    }


def _analysis(
    name: str, portfolio: str, treaties: list[str], event_rate: str | None = "RMS 2023 Stochastic"
) -> dict:
    return {
        "key": name,
        "analysis_name": name,
        "edm_name": EDM,
        "portfolio_name": portfolio,
        "analysis_profile": "DLM CBHU v23",
        "output_profile": "Modeling_Output_Profile",
        "event_rate_scheme": event_rate,
        "treaties": treaties,
        "tags": [f"202503_{name}"],
    }


def _group(name: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    return {"key": name, "group_name": name, "items": [{"name": n, "kind": k} for n, k in items]}


def _export(entities: list[tuple[str, str]]) -> list[dict[str, Any]]:
    seed = entities[0][0]
    return [
        {
            "key": name,
            "rdm_name": RDM,
            "entity_name": name,
            "entity_kind": kind,
            "rdm_role": "seed" if i == 0 else "join",
            "seed_key": seed,
        }
        for i, (name, kind) in enumerate(entities)
    ]


# The job configurations of a small cycle, in the shape build_job_configurations gives.
SMALL_CYCLE: dict[BatchType, list[dict[str, Any]]] = {
    BatchType.EDM_CREATION: [{"key": EDM, "edm_name": EDM, "store_in_data_bridge": True}],
    BatchType.PORTFOLIO_CREATION: [_base("P1"), _base("P2")],
    BatchType.MRI_IMPORT: [_csv_job("P1"), _csv_job("P2")],
    BatchType.CREATE_REINSURANCE_TREATIES: [_treaty("T1"), _treaty("T2")],
    BatchType.EDM_DB_UPGRADE: [
        {"key": EDM, "edm_name": EDM, "edm_data_version": "23.0.0", "target_edm_version": "23"}
    ],
    BatchType.GEOHAZ: [
        {**_base(p), "geocode_version": "23.0.0", "hazard_version": "23.0.0", "thresholds": []}
        for p in ("P1", "P2")
    ],
    BatchType.ANALYSIS: [
        _analysis("A1", "P1", ["T1"]),
        _analysis("A2", "P2", ["T1", "T2"]),
        _analysis("A3", "P2", [], event_rate=None),
    ],
    BatchType.GROUPING: [
        _group("G1", [("A1", "analysis"), ("A2", "analysis")]),
        _group("G2", [("A3", "analysis")]),
    ],
    # R2 rolls up R1 of the same batch: its submission waits for R1 to exist.
    BatchType.GROUPING_ROLLUP: [
        _group("R1", [("G1", "group"), ("G2", "group"), ("A1", "analysis")]),
        _group("R2", [("R1", "group"), ("A3", "analysis")]),
    ],
    BatchType.EXPORT_TO_RDM: _export(
        [
            ("A1", "analysis"),
            ("A2", "analysis"),
            ("A3", "analysis"),
            ("G1", "group"),
            ("G2", "group"),
            ("R1", "group"),
            ("R2", "group"),
        ]
    ),
}


def write_csvs(cycle_dir: Path, names: list[str], accounts: int = 2, locations: int = 3) -> None:
    cycle_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        rows = "\n".join(f"ACC{i},{name}" for i in range(accounts))
        (cycle_dir / f"Modeling_202503_Moodys_{name}_Account.csv").write_text(
            f"ACCNTNUM,PORTNAME\n{rows}\n"
        )
        rows = "\n".join(f"ACC{i % accounts},LOC{i}" for i in range(locations))
        (cycle_dir / f"Modeling_202503_Moodys_{name}_Location.csv").write_text(
            f"ACCNTNUM,LOCNUM\n{rows}\n"
        )


@pytest.fixture
def sim(tmp_path: Path) -> RiskModelerSimulator:
    simulator = RiskModelerSimulator(tmp_path / "rm.db", workflow_seconds=(0.005, 0.005, 0.01))
    yield simulator
    simulator.close()


@pytest.fixture
def batch_store(tmp_path: Path) -> BatchStore:
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


def _ctx(client, tmp_path: Path) -> HandlerContext:
    return HandlerContext(
        client=client,
        cycle=CYCLE,
        data_dir=tmp_path / "data",
        source_database_url="sqlite://",
        databridge_url="sqlite://",
    )


def _fast(handler: JobHandler) -> JobHandler:
    handler.ready_poll_seconds = 0.01  # type: ignore[attr-defined]
    handler.ready_timeout_seconds = 5.0  # type: ignore[attr-defined]
    return handler


async def _run_type(
    store: BatchStore, sim, tmp_path: Path, batch_type: BatchType, jobs: list[dict]
):
    batch_id = store.create_batch(
        family="risk_modeling", batch_type=batch_type.value, job_configurations=jobs
    )
    async with risk_modeler_client(sim) as client:
        result = await run_batch(
            store, batch_id, _fast(handler_for(batch_type, _ctx(client, tmp_path))), FAST
        )
    return batch_id, result


def _run_chain(
    store: BatchStore, sim, tmp_path: Path, upto: BatchType | None = None
) -> dict[BatchType, Any]:
    write_csvs(tmp_path / "data" / CYCLE, ["P1", "P2"])
    results = {}
    for batch_type in BATCH_TYPE_ORDER:
        if batch_type not in SMALL_CYCLE:
            continue
        results[batch_type] = asyncio.run(
            _run_type(store, sim, tmp_path, batch_type, SMALL_CYCLE[batch_type])
        )
        if batch_type == upto:
            break
    return results


# ------------------------------------------------------------------------ the whole chain


def test_a_small_cycle_reconciles_completed_for_every_rest_batch_type_in_order(
    batch_store, sim, tmp_path
):
    results = _run_chain(batch_store, sim, tmp_path)
    for batch_type, (batch_id, result) in results.items():
        jobs = batch_store.list_jobs(batch_id)
        assert result.status == BatchStatus.COMPLETED, (
            batch_type,
            [(j.key, j.last_error) for j in jobs],
        )
        assert all(j.status == JobStatus.FINISHED for j in jobs), batch_type

    async def state():
        async with risk_modeler_client(sim) as client:
            return (
                await client.list_edms(),
                await client.list_portfolios(EDM),
                await client.list_treaties(EDM),
                await client.list_analyses(),
                await client.list_rdms(),
            )

    edms, portfolios, treaties, analyses, rdms = asyncio.run(state())
    assert edms[0]["dataVersion"] == "23"
    assert {
        p["name"]: (p["accountsCount"], p["locationsCount"], p["geocoded"]) for p in portfolios
    } == {
        "P1": (2, 3, True),
        "P2": (2, 3, True),
    }
    assert sorted(t["name"] for t in treaties) == ["T1", "T2"] and all(t["lobs"] for t in treaties)
    by_name = {a["name"]: a for a in analyses}
    assert sorted(by_name) == ["A1", "A2", "A3", "G1", "G2", "R1", "R2"]
    assert by_name["R2"]["analysisIds"] == [by_name["R1"]["id"], by_name["A3"]["id"]]
    assert by_name["A2"]["treaties"] == [t["id"] for t in sorted(treaties, key=lambda t: t["name"])]
    assert [(r["name"], r["analysisCount"]) for r in rdms] == [(RDM, 7)]
    stats = sim.stats()
    assert stats["duplicate_acceptances"] == [] and stats["accepted_per_request_id_max"] == 1


def test_the_mri_import_summary_counts_the_csv_data_rows(batch_store, sim, tmp_path):
    results = _run_chain(batch_store, sim, tmp_path, upto=BatchType.MRI_IMPORT)
    batch_id, result = results[BatchType.MRI_IMPORT]
    assert result.status == BatchStatus.COMPLETED
    job = batch_store.list_jobs(batch_id)[0]

    async def workflow():
        async with risk_modeler_client(sim) as client:
            return await client.get_workflow(job.workflow_id)

    assert asyncio.run(workflow()).summary == {
        "importSummary": "Imported 2 Accounts and 3 Locations"
    }


def test_a_missing_csv_is_a_permanent_error_naming_the_file(batch_store, sim, tmp_path):
    _run_chain(batch_store, sim, tmp_path, upto=BatchType.PORTFOLIO_CREATION)
    (tmp_path / "data" / CYCLE / "Modeling_202503_Moodys_P2_Location.csv").unlink()
    batch_id, result = asyncio.run(
        _run_type(
            batch_store, sim, tmp_path, BatchType.MRI_IMPORT, SMALL_CYCLE[BatchType.MRI_IMPORT]
        )
    )
    assert result.status == BatchStatus.ERROR
    errored = {
        j.key: j.last_error for j in batch_store.list_jobs(batch_id) if j.status == JobStatus.ERROR
    }
    assert list(errored) == ["P2"] and "Modeling_202503_Moodys_P2_Location.csv" in errored["P2"]


def test_a_group_of_an_analysis_that_does_not_exist_is_an_error_naming_it(
    batch_store, sim, tmp_path
):
    _run_chain(batch_store, sim, tmp_path, upto=BatchType.EDM_CREATION)
    batch_id, result = asyncio.run(
        _run_type(
            batch_store, sim, tmp_path, BatchType.GROUPING, [_group("G9", [("NOPE", "analysis")])]
        )
    )
    assert result.status == BatchStatus.ERROR
    assert 'analysis "NOPE"' in batch_store.list_jobs(batch_id)[0].last_error


def test_a_join_export_waits_for_the_seed_rdm_and_reports_not_ready_when_it_never_comes(
    sim, tmp_path
):
    async def scenario():
        async with risk_modeler_client(sim) as client:
            await client.create_edm(EDM, request_id="e")
            await asyncio.sleep(0.05)
            pf = await client.create_portfolio(EDM, name="P1", number="1", request_id="p")
            profile = (await client.list_reference_data("model-profiles", ["M"]))[0]["id"]
            await client.submit_analysis(
                pf,
                {
                    "edm": EDM,
                    "jobName": "A1",
                    "modelProfileId": profile,
                    "outputProfileId": profile,
                },
                request_id="a",
            )
            await asyncio.sleep(0.05)
            handler = ExportToRdmHandler(_ctx(client, tmp_path))
            handler.ready_poll_seconds, handler.ready_timeout_seconds = 0.01, 0.05
            job = _job(_export([("X", "analysis"), ("A1", "analysis")])[1], "join-1")
            with pytest.raises(NotReady, match=RDM):
                await handler.submit(job)

    asyncio.run(scenario())


# ------------------------------------------------------------------------ idempotent replay


def _job(configuration: dict[str, Any], request_id: str, job_id: int = 1):
    from datetime import UTC, datetime

    from batch_pipelines.store.batch_store import JobRecord

    now = datetime.now(UTC)
    return JobRecord(
        id=job_id,
        batch_id=1,
        job_configuration_id=job_id,
        parent_job_id=None,
        status=JobStatus.INITIATED,
        skipped=False,
        skipped_reason=None,
        request_id=request_id,
        workflow_id=None,
        submission_request=None,
        submission_response=None,
        last_error=None,
        submit_attempts=0,
        created_at=now,
        submit_requested_at=None,
        submitted_at=None,
        finished_at=None,
        updated_at=now,
        key=configuration["key"],
        configuration=configuration,
    )


@pytest.mark.parametrize(
    "batch_type",
    [t for t in BATCH_TYPE_ORDER if t in SMALL_CYCLE],
    ids=lambda t: t.asset_name,
)
def test_submitting_a_job_twice_with_its_request_id_is_accepted_once_and_replayed(
    batch_store, sim, tmp_path, batch_type
):
    order = [t for t in BATCH_TYPE_ORDER if t in SMALL_CYCLE]
    previous = order[order.index(batch_type) - 1] if order.index(batch_type) else None
    if previous is not None:
        _run_chain(batch_store, sim, tmp_path, upto=previous)
    write_csvs(tmp_path / "data" / CYCLE, ["P1", "P2"])
    job = _job(SMALL_CYCLE[batch_type][0], f"replay-{batch_type.asset_name}")

    async def twice():
        async with risk_modeler_client(sim) as client:
            handler = handler_for(batch_type, _ctx(client, tmp_path))
            before = sim.stats()["accepted_total"]
            first = await handler.submit(job)
            second = await handler_for(batch_type, _ctx(client, tmp_path)).submit(job)
            return first, second, sim.stats()["accepted_total"] - before

    first, second, accepted = asyncio.run(twice())
    assert first.workflow_id == second.workflow_id and first.response == second.response
    stats = sim.stats()
    assert stats["replays_total"] >= 1 and stats["duplicate_acceptances"] == []
    # MRI import: bucket, two files, mapping and the import; treaties: treaty and its lines.
    assert accepted == {BatchType.MRI_IMPORT: 5, BatchType.CREATE_REINSURANCE_TREATIES: 2}.get(
        batch_type, 1
    )


def test_step_request_ids_are_stable_and_distinct_per_step():
    assert step_request_id("r", "bucket") == step_request_id("r", "bucket")
    assert (
        len(
            {step_request_id("r", s) for s in ("bucket", "mapping")}
            | {step_request_id("q", "bucket")}
        )
        == 3
    )


# ------------------------------------------------------------------------ registry


def test_every_batch_type_has_a_handler_factory():
    assert set(HANDLERS) == set(BatchType)


def test_handler_for_builds_each_rest_handler_from_the_context_alone(tmp_path):
    ctx = _ctx(object(), tmp_path)
    for batch_type in BatchType:
        if batch_type in (BatchType.DATA_EXTRACTION, BatchType.PORTFOLIO_MAPPING):
            continue
        handler = handler_for(batch_type.value, ctx)
        assert isinstance(handler, JobHandler) and handler.execution == batch_type.execution


def test_a_missing_csv_error_is_a_missing_reference(tmp_path):
    handler = MriImportHandler(_ctx(object(), tmp_path))
    with pytest.raises(MissingReference, match="Account CSV"):
        handler._csv("nope.csv", "Account CSV")
