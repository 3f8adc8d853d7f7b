"""Validation before submission: pure rules on a state snapshot, and the async wrapper."""

from __future__ import annotations

import asyncio

import pytest

from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.entity_validation import (
    PortfolioState,
    RiskModelerState,
    check_batch,
    validate_batch,
)
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.risk_modeling.test_handlers import (
    CYCLE,
    EDM,
    RDM,
    SMALL_CYCLE,
    _ctx,
    _run_chain,
    write_csvs,
)


@pytest.fixture
def sim(tmp_path) -> RiskModelerSimulator:
    simulator = RiskModelerSimulator(tmp_path / "rm.db", workflow_seconds=(0.005, 0.005, 0.01))
    yield simulator
    simulator.close()


@pytest.fixture
def batch_store(tmp_path) -> BatchStore:
    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


B = BatchType


def _state(**kw) -> RiskModelerState:
    return RiskModelerState(**kw)


def _errors(batch_type: BatchType, state: RiskModelerState) -> list[str]:
    return check_batch(batch_type, SMALL_CYCLE[batch_type], state).errors


# ------------------------------------------------------------------------ pure rules


def test_edm_creation_needs_the_server():
    assert _errors(B.EDM_CREATION, _state(servers={"other"}, edms=set())) == [
        'Server "databridge-1" does not exist'
    ]


def test_edm_creation_refuses_an_existing_edm():
    assert _errors(B.EDM_CREATION, _state(servers={"databridge-1"}, edms={EDM})) == [
        f'EDM "{EDM}" already exists'
    ]


def test_edm_creation_passes_on_a_clean_service():
    assert check_batch(
        B.EDM_CREATION, SMALL_CYCLE[B.EDM_CREATION], _state(servers={"databridge-1"}, edms=set())
    ).ok


def test_portfolio_creation_needs_the_edm():
    assert _errors(B.PORTFOLIO_CREATION, _state(edms=set())) == [f'EDM "{EDM}" does not exist']


def test_portfolio_creation_refuses_an_existing_portfolio():
    state = _state(edms={EDM}, portfolios={EDM: {"P2": PortfolioState("P2")}})
    assert _errors(B.PORTFOLIO_CREATION, state) == [f'Portfolio "P2" already exists in EDM "{EDM}"']


def test_mri_import_needs_the_csv_files_and_the_portfolios():
    state = _state(
        edms={EDM},
        portfolios={EDM: {"P1": PortfolioState("P1")}},
        files={
            "Modeling_202503_Moodys_P1_Account.csv",
            "Modeling_202503_Moodys_P1_Location.csv",
            "Modeling_202503_Moodys_P2_Account.csv",
        },
        files_dir="/data/c",
    )
    assert _errors(B.MRI_IMPORT, state) == [
        'Location CSV file "Modeling_202503_Moodys_P2_Location.csv" does not exist in /data/c',
        f'Portfolio "P2" does not exist in EDM "{EDM}"',
    ]


def test_mri_import_needs_empty_portfolios():
    state = _state(
        edms={EDM}, portfolios={EDM: {"P1": PortfolioState("P1", 4, 5), "P2": PortfolioState("P2")}}
    )
    assert _errors(B.MRI_IMPORT, state) == [
        f'Portfolio "P1" in EDM "{EDM}" is not empty (4 accounts, 5 locations)'
    ]


def test_treaties_need_the_edm_and_no_existing_treaty():
    assert _errors(B.CREATE_REINSURANCE_TREATIES, _state(edms=set())) == [
        f'EDM "{EDM}" does not exist'
    ]
    state = _state(edms={EDM}, treaties={EDM: {"T2"}})
    assert _errors(B.CREATE_REINSURANCE_TREATIES, state) == [
        f'Treaty "T2" already exists in EDM "{EDM}"'
    ]


def test_edm_upgrade_needs_the_edm_with_portfolios():
    assert _errors(B.EDM_DB_UPGRADE, _state(edms={EDM})) == [f'EDM "{EDM}" has no portfolios']


def test_geohaz_needs_portfolios_with_locations():
    state = _state(
        edms={EDM},
        portfolios={EDM: {"P1": PortfolioState("P1", 1, 0), "P2": PortfolioState("P2", 1, 1)}},
    )
    assert _errors(B.GEOHAZ, state) == [f'Portfolio "P1" in EDM "{EDM}" has no locations']


def test_portfolio_mapping_needs_base_portfolios_with_accounts_and_no_sub_portfolios():
    jobs = [
        {"key": "P1", "edm_name": EDM, "portfolio_name": "P1", "sub_portfolios": ["P1_A"]},
        {"key": "P2", "edm_name": EDM, "portfolio_name": "P2", "sub_portfolios": []},
    ]
    state = _state(
        edms={EDM},
        portfolios={
            EDM: {
                "P1": PortfolioState("P1", 3, 3),
                "P1_A": PortfolioState("P1_A"),
                "P2": PortfolioState("P2"),
            }
        },
    )
    assert check_batch(B.PORTFOLIO_MAPPING, jobs, state).errors == [
        f'Sub-portfolio "P1_A" already exists in EDM "{EDM}"',
        f'Portfolio "P2" in EDM "{EDM}" has no accounts',
    ]


def _analysis_state(**kw) -> RiskModelerState:
    base = dict(
        edms={EDM},
        portfolios={EDM: {"P1": PortfolioState("P1"), "P2": PortfolioState("P2")}},
        treaties={EDM: {"T1", "T2"}},
        reference={
            "model-profiles": {"DLM CBHU v23"},
            "output-profiles": {"Modeling_Output_Profile"},
            "event-rate-schemes": {"RMS 2023 Stochastic"},
        },
        analyses=set(),
    )
    return _state(**{**base, **kw})


def test_analysis_passes_when_everything_it_names_exists():
    assert check_batch(B.ANALYSIS, SMALL_CYCLE[B.ANALYSIS], _analysis_state()).ok


def test_analysis_needs_portfolios_treaties_and_reference_data():
    state = _analysis_state(
        portfolios={EDM: {"P1": PortfolioState("P1")}},
        treaties={EDM: {"T1"}},
        reference={
            "model-profiles": set(),
            "output-profiles": {"Modeling_Output_Profile"},
            "event-rate-schemes": set(),
        },
    )
    assert _errors(B.ANALYSIS, state) == [
        'Model profile "DLM CBHU v23" does not exist',
        'Event rate scheme "RMS 2023 Stochastic" does not exist',
        f'Portfolio "P2" does not exist in EDM "{EDM}"',
        f'Treaty "T2" does not exist in EDM "{EDM}"',
    ]


def test_existing_analyses_are_reported_as_existing_not_as_errors():
    result = check_batch(B.ANALYSIS, SMALL_CYCLE[B.ANALYSIS], _analysis_state(analyses={"A2"}))
    assert result.ok and result.existing == ['Analysis "A2" already exists']


def test_grouping_needs_its_analyses_and_reports_an_existing_group_for_a_decision():
    state = _state(analyses={"A1", "A3"}, groups={"G2"})
    result = check_batch(B.GROUPING, SMALL_CYCLE[B.GROUPING], state)
    assert result.errors == ['Analysis "A2" does not exist']
    assert result.existing == ['Group "G2" already exists']


def test_a_rollup_may_name_a_group_created_by_the_same_batch():
    state = _state(analyses={"A1", "A3"}, groups={"G1"})
    assert _errors(B.GROUPING_ROLLUP, state) == ['Group "G2" does not exist']


def test_export_needs_the_analyses_and_groups_and_no_existing_rdm():
    state = _state(analyses={"A1", "A2", "A3"}, groups={"G1", "G2", "R1"}, rdms={RDM})
    assert _errors(B.EXPORT_TO_RDM, state) == [
        f'RDM "{RDM}" already exists',
        'Group "R2" does not exist',
    ]


def test_data_extraction_has_no_risk_modeler_rules():
    assert check_batch(B.DATA_EXTRACTION, [{"key": "x"}], _state()).ok


# ------------------------------------------------------------------------ on a live simulator


def _validate(sim, tmp_path, batch_type: BatchType):
    async def go():
        async with risk_modeler_client(sim) as client:
            return await validate_batch(batch_type, SMALL_CYCLE[batch_type], _ctx(client, tmp_path))

    return asyncio.run(go())


def test_on_a_fresh_simulator_only_edm_creation_validates(sim, tmp_path):
    assert _validate(sim, tmp_path, B.EDM_CREATION).ok
    assert _validate(sim, tmp_path, B.PORTFOLIO_CREATION).errors == [f'EDM "{EDM}" does not exist']
    errors = _validate(sim, tmp_path, B.MRI_IMPORT).errors
    assert (
        f'Account CSV file "Modeling_202503_Moodys_P1_Account.csv" does not exist in {tmp_path / "data" / CYCLE}'
        in errors
    )
    assert _validate(sim, tmp_path, B.EXPORT_TO_RDM).errors[0] == 'Analysis "A1" does not exist'


def test_after_a_small_cycle_each_batch_type_reports_what_already_exists(
    batch_store, sim, tmp_path
):
    results = _run_chain(batch_store, sim, tmp_path)
    assert all(result.status == BatchStatus.COMPLETED for _, result in results.values())
    assert _validate(sim, tmp_path, B.EDM_CREATION).errors == [f'EDM "{EDM}" already exists']
    assert _validate(sim, tmp_path, B.PORTFOLIO_CREATION).errors == [
        f'Portfolio "P1" already exists in EDM "{EDM}"',
        f'Portfolio "P2" already exists in EDM "{EDM}"',
    ]
    assert (
        _validate(sim, tmp_path, B.MRI_IMPORT)
        .errors[0]
        .startswith(f'Portfolio "P1" in EDM "{EDM}" is not empty')
    )
    assert (
        _validate(sim, tmp_path, B.CREATE_REINSURANCE_TREATIES).errors[0]
        == f'Treaty "T1" already exists in EDM "{EDM}"'
    )
    assert _validate(sim, tmp_path, B.EDM_DB_UPGRADE).ok and _validate(sim, tmp_path, B.GEOHAZ).ok
    analysis = _validate(sim, tmp_path, B.ANALYSIS)
    assert analysis.ok and analysis.existing == [
        'Analysis "A1" already exists',
        'Analysis "A2" already exists',
        'Analysis "A3" already exists',
    ]
    grouping = _validate(sim, tmp_path, B.GROUPING)
    assert grouping.ok and grouping.existing == [
        'Group "G1" already exists',
        'Group "G2" already exists',
    ]
    assert _validate(sim, tmp_path, B.EXPORT_TO_RDM).errors == [f'RDM "{RDM}" already exists']


@pytest.mark.parametrize("batch_type", [B.ANALYSIS, B.GROUPING, B.EXPORT_TO_RDM, B.MRI_IMPORT])
def test_validation_uses_a_few_list_calls_whatever_the_number_of_jobs(sim, tmp_path, batch_type):
    write_csvs(tmp_path / "data" / CYCLE, ["P1"])
    jobs = [dict(SMALL_CYCLE[batch_type][0], key=f"k{i}") for i in range(50)]

    async def go():
        async with risk_modeler_client(sim) as client:
            before = sim.stats()["requests_total"]
            await validate_batch(batch_type, jobs, _ctx(client, tmp_path))
            return sim.stats()["requests_total"] - before

    assert asyncio.run(go()) <= 6


def test_entity_presence_is_told_per_batch_type_and_unknown_where_nothing_can_be_looked_up():
    from batch_pipelines.risk_modeling.entity_validation import (
        PortfolioState,
        RiskModelerState,
        entity_present,
    )

    state = RiskModelerState(
        edms={"E1"},
        portfolios={"E1": {"P1": PortfolioState("P1", accounts=3), "P2": PortfolioState("P2")}},
        treaties={"E1": {"T1"}},
        analyses={"A1"},
        groups={"G1"},
    )
    assert entity_present("EDM Creation", {"edm_name": "E1"}, state) is True
    assert entity_present("EDM Creation", {"edm_name": "E2"}, state) is False
    assert (
        entity_present("Portfolio Creation", {"edm_name": "E1", "portfolio_name": "P2"}, state)
        is True
    )
    assert entity_present("MRI Import", {"edm_name": "E1", "portfolio_name": "P2"}, state) is False
    assert entity_present("MRI Import", {"edm_name": "E1", "portfolio_name": "P1"}, state) is True
    assert (
        entity_present(
            "Create Reinsurance Treaties", {"edm_name": "E1", "treaty_name": "T9"}, state
        )
        is False
    )
    assert entity_present("Analysis", {"analysis_name": "A1"}, state) is True
    assert entity_present("Grouping", {"group_name": "G2"}, state) is False
    assert entity_present("GeoHaz", {"edm_name": "E1", "portfolio_name": "P1"}, state) is None
    assert entity_present("Export to RDM", {"rdm_name": "R"}, state) is None


def test_per_edm_listings_run_side_by_side_within_the_limit_and_land_on_their_edm():
    from types import SimpleNamespace

    from batch_pipelines.risk_modeling.entity_validation import EDM_LISTINGS_AT_ONCE, fetch_state

    edms = [f"EDM_{i:02d}" for i in range(20)]

    class Client:
        in_flight = most = 0

        async def list_edms(self):
            return [{"name": e} for e in edms]

        async def list_portfolios(self, edm):
            Client.in_flight += 1
            Client.most = max(Client.most, Client.in_flight)
            await asyncio.sleep(0.01)
            Client.in_flight -= 1
            return [{"name": f"P_{edm}", "accountsCount": 3}]

    jobs = [{"key": f"k{i}", "edm_name": e, "portfolio_name": f"P_{e}"} for i, e in enumerate(edms)]
    state = asyncio.run(
        fetch_state(BatchType.EDM_DB_UPGRADE, jobs, SimpleNamespace(client=Client()))
    )
    assert 1 < Client.most <= EDM_LISTINGS_AT_ONCE
    assert list(state.portfolios) == edms
    assert all(set(state.portfolios[e]) == {f"P_{e}"} for e in edms)
    assert state.portfolios["EDM_07"]["P_EDM_07"].accounts == 3
