"""Data Extraction and Portfolio Mapping: the two SQL batch types, on SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import csv
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from batch_pipelines.clients.http import TransientServiceError
from batch_pipelines.core.errors import JobError
from batch_pipelines.core.names import UnsafeName
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.handlers import JobHandler
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.job_configurations import csv_file_names
from batch_pipelines.risk_modeling.sample_source import (
    create_sample_source,
    peril_of,
    sub_portfolio_segment,
)
from batch_pipelines.risk_modeling.sql_jobs import (
    ACCOUNTS_SQL,
    LOCATIONS_SQL,
    SQL_DIR,
    DataExtractionHandler,
    PortfolioMappingHandler,
    SqlJobError,
    database_url,
    plan_sub_portfolios,
)
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import JobRecord

DATE = "202503"
CYCLE = "202503_Quarterly"
EDM = "RM_EDM_202503_Quarterly_USEQ"
SQL_SERVER_URL = "mssql+pymssql://extract:password@sqlserver.example:1433/warehouse"


def _job(configuration: dict[str, Any], job_id: int = 1) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(
        id=job_id,
        batch_id=1,
        job_configuration_id=job_id,
        parent_job_id=None,
        status=JobStatus.INITIATED,
        skipped=False,
        skipped_reason=None,
        request_id=f"req-{job_id}",
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


def _extraction_job(import_file: str, date_value: str = DATE) -> dict[str, Any]:
    account, location = csv_file_names(date_value, import_file)
    return {
        "key": import_file,
        "edm_name": EDM,
        "portfolio_name": import_file,
        "import_file": import_file,
        "date_value": date_value,
        "account_csv": account,
        "location_csv": location,
    }


def _mapping_job(base: str, subs: list[str], *, store: bool = True) -> dict[str, Any]:
    return {
        "key": base,
        "edm_name": EDM,
        "portfolio_name": base,
        "import_file": base,
        "date_value": DATE,
        "store_in_data_bridge": store,
        "sub_portfolios": subs,
    }


def _ctx(tmp_path: Path, databridge: Path | None = None) -> HandlerContext:
    return HandlerContext(
        client=None,  # type: ignore[arg-type] -- the SQL handlers never call the Risk Modeler
        cycle=CYCLE,
        data_dir=tmp_path / "data",
        source_database_url=f"sqlite:///{tmp_path / 'source.db'}",
        databridge_url=f"sqlite:///{databridge or tmp_path / 'databridge.db'}",
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _submit(handler: Any, configuration: dict[str, Any]):
    return asyncio.run(handler.submit(_job(configuration)))


def _databridge_with_base(path: Path, base: str = "USEQ") -> int:
    """A Data Bridge file shaped like the simulator's, with one EDM and its base portfolio."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE portfolios (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            datasource TEXT NOT NULL, name TEXT NOT NULL, number TEXT NOT NULL,
            description TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (datasource, name));
        """
    )
    cursor = db.execute(
        "INSERT INTO portfolios (datasource, name, number, description, created_at) VALUES (?, ?, ?, '', 0)",
        (EDM, base, base),
    )
    db.commit()
    db.close()
    return int(cursor.lastrowid)


def _portfolios(path: Path) -> dict[str, tuple]:
    db = sqlite3.connect(path)
    try:
        return {
            row[0]: row[1:]
            for row in db.execute("SELECT name, id, datasource, description FROM portfolios")
        }
    finally:
        db.close()


# --------------------------------------------------------------------------- sample source


def test_the_sample_source_is_the_same_every_time_and_replaces_its_own_rows(tmp_path):
    first = create_sample_source(
        tmp_path / "a.db", ["USEQ", "USHU"], date_value=DATE, accounts_per_file=4
    )
    create_sample_source(tmp_path / "a.db", ["USEQ", "USHU"], date_value=DATE, accounts_per_file=4)
    create_sample_source(tmp_path / "b.db", ["USEQ", "USHU"], date_value=DATE, accounts_per_file=4)
    dumps = []
    for name in ("a.db", "b.db"):
        db = sqlite3.connect(tmp_path / name)
        dumps.append(
            (
                db.execute(
                    "SELECT * FROM accounts ORDER BY import_file, account_number"
                ).fetchall(),
                db.execute(
                    "SELECT * FROM locations ORDER BY import_file, location_number"
                ).fetchall(),
            )
        )
        db.close()
    assert dumps[0] == dumps[1]
    assert (first.accounts, first.locations) == (8, 16)
    assert len(dumps[0][0]) == 8 and len(dumps[0][1]) == 16


def test_the_sample_source_needs_a_date_when_given_only_import_files(tmp_path):
    with pytest.raises(ValueError, match="date_value"):
        create_sample_source(tmp_path / "a.db", ["USEQ"])


def test_import_file_codes_name_their_peril_and_sub_portfolios_their_segment():
    assert [peril_of(f) for f in ("USEQ", "CBHU", "USFF", "USFL_Other", "USWF", "USST")] == [
        "EQ",
        "WS",
        "EQ",
        "FL",
        "FR",
        "TO",
    ]
    assert sub_portfolio_segment("USFL_Other", "USFL_Other_Clay_Home") == "Clay_Home"
    assert sub_portfolio_segment("USEQ", "Condo") == "Condo"


# --------------------------------------------------------------------------- Data Extraction


def test_extraction_writes_the_account_and_location_csvs_of_the_import_file(tmp_path):
    create_sample_source(
        tmp_path / "source.db",
        ["USEQ", "USHU"],
        date_value=DATE,
        accounts_per_file=5,
        locations_per_account=3,
    )
    handler = DataExtractionHandler(_ctx(tmp_path))
    assert isinstance(handler, JobHandler) and handler.execution == "sync"

    outcome = _submit(handler, _extraction_job("USEQ"))

    cycle_dir = tmp_path / "data" / CYCLE
    account_csv = cycle_dir / "Modeling_202503_Moodys_USEQ_Account.csv"
    location_csv = cycle_dir / "Modeling_202503_Moodys_USEQ_Location.csv"
    assert outcome.status == JobStatus.FINISHED
    assert outcome.response == {
        "accounts": 5,
        "locations": 15,
        "account_csv": str(account_csv),
        "location_csv": str(location_csv),
    }
    accounts, locations = _rows(account_csv), _rows(location_csv)
    assert len(accounts) == 5 and len(locations) == 15
    assert {"ACCNTNUM", "ACCNTNAME", "POLICYNUM", "USERDEF1"} <= set(accounts[0])
    assert {
        "LOCNUM",
        "STATECODE",
        "LATITUDE",
        "BLDGCLASS",
        "OCCTYPE",
        "YEARBUILT",
        "EQCV1VAL",
    } <= set(locations[0])
    assert "PERIL" not in locations[0] and "WSCV1VAL" not in locations[0]
    assert {row["USERDEF2"] for row in accounts} == {"USEQ"}
    assert {row["ACCNTNUM"] for row in locations} == {row["ACCNTNUM"] for row in accounts}
    assert asyncio.run(handler.track([_job(_extraction_job("USEQ"))])) == {}


def test_extraction_refuses_to_write_outside_the_data_folder(tmp_path):
    # The cycle a Cycle Type of "/../../../../../outside/pwn" used to make.
    create_sample_source(tmp_path / "source.db", ["USEQ"], date_value=DATE, accounts_per_file=2)
    (tmp_path / "a" / "b" / "c" / "d").mkdir(parents=True)
    ctx = HandlerContext(
        client=None,  # type: ignore[arg-type] -- the SQL handlers never call the Risk Modeler
        cycle="202503_/../../../../../outside/pwn",
        data_dir=tmp_path / "a" / "b" / "c" / "d" / "data",
        source_database_url=f"sqlite:///{tmp_path / 'source.db'}",
        databridge_url=f"sqlite:///{tmp_path / 'databridge.db'}",
    )
    with pytest.raises(UnsafeName, match="outside"):
        _submit(DataExtractionHandler(ctx), _extraction_job("USEQ"))
    # and a file name from an overridden configuration cannot climb out of the cycle either
    escaping = {**_extraction_job("USEQ"), "account_csv": "../../escaped.csv"}
    with pytest.raises(UnsafeName, match="outside"):
        _submit(DataExtractionHandler(_ctx(tmp_path)), escaping)
    assert sorted(p.name for p in tmp_path.rglob("*.csv")) == []


def test_extraction_values_travel_as_bound_parameters_so_quotes_neither_break_nor_inject(tmp_path):
    create_sample_source(
        tmp_path / "source.db",
        ["O'Brien", "USEQ"],
        date_value=DATE,
        accounts_per_file=3,
        locations_per_account=1,
    )
    handler = DataExtractionHandler(_ctx(tmp_path))

    outcome = _submit(handler, _extraction_job("O'Brien"))
    assert outcome.response["accounts"] == 3
    assert {row["USERDEF2"] for row in _rows(Path(outcome.response["account_csv"]))} == {"O'Brien"}

    with pytest.raises(SqlJobError, match="no accounts"):
        _submit(handler, _extraction_job("x' OR '1'='1"))
    with pytest.raises(SqlJobError, match="no accounts"):
        _submit(handler, _extraction_job("USEQ'; DROP TABLE accounts; --"))
    db = sqlite3.connect(tmp_path / "source.db")
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 6
    db.close()


def test_extraction_sends_its_values_to_the_database_only_as_bound_parameters(tmp_path):
    import_file = "USEQ_bound_check"
    create_sample_source(tmp_path / "source.db", [import_file], date_value=DATE)
    executed: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        executed.append((statement, parameters))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        _submit(DataExtractionHandler(_ctx(tmp_path)), _extraction_job(import_file))
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    selects = [
        (sql, params)
        for sql, params in executed
        if "FROM accounts" in sql or "FROM locations" in sql
    ]
    assert len(selects) == 2
    for sql, params in selects:
        # The statement the driver receives holds placeholders, never the values.
        assert import_file not in sql and DATE not in sql
        assert list(params) == [import_file, DATE]  # SQLite's driver takes them by position


@pytest.mark.parametrize("name", [ACCOUNTS_SQL, LOCATIONS_SQL])
def test_the_shipped_extraction_sql_binds_exactly_the_import_file_and_the_date(name):
    statement = sa.text((SQL_DIR / name).read_text(encoding="utf-8"))
    assert set(statement.compile().params) == {"import_file", "date_value"}
    # Compiled for SQL Server's driver the values stay out of the text as well.
    compiled = statement.compile(dialect=sa.create_engine(SQL_SERVER_URL).dialect)
    assert "%(import_file)s" in str(compiled) and "%(date_value)s" in str(compiled)


def _readme_sql_server_url() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (url,) = re.findall(r"`(mssql\+pymssql://[^`]+)`", readme)
    return url


def test_the_readme_sql_server_url_form_is_accepted_and_loads_the_maintained_driver():
    url = database_url(_readme_sql_server_url(), what="source database")
    assert (url.get_backend_name(), url.get_driver_name()) == ("mssql", "pymssql")
    engine = sa.create_engine(url)  # imports the DB-API driver of the sqlserver extra
    assert engine.dialect.driver == "pymssql"
    assert url.port == 1433 and url.database
    engine.dispose()


def test_an_unreachable_sql_server_is_a_transient_error_that_never_shows_the_password(tmp_path):
    ctx = HandlerContext(
        client=None,  # type: ignore[arg-type]
        cycle=CYCLE,
        data_dir=tmp_path / "data",
        source_database_url="mssql+pymssql://extract:s3cr3t-pw@127.0.0.1:1/warehouse?login_timeout=2",
        databridge_url=f"sqlite:///{tmp_path / 'databridge.db'}",
    )
    handler = DataExtractionHandler(ctx)
    try:
        with pytest.raises(TransientServiceError) as caught:
            _submit(handler, _extraction_job("USEQ"))
    finally:
        handler.close()
    assert "s3cr3t-pw" not in str(caught.value)


def test_extraction_replaces_an_existing_file_whole_and_leaves_no_temporary_files(tmp_path):
    create_sample_source(tmp_path / "source.db", ["USEQ"], date_value=DATE, accounts_per_file=4)
    cycle_dir = tmp_path / "data" / CYCLE
    cycle_dir.mkdir(parents=True)
    account_csv = cycle_dir / "Modeling_202503_Moodys_USEQ_Account.csv"
    account_csv.write_text("half a file from a killed run")
    handler = DataExtractionHandler(_ctx(tmp_path))

    _submit(handler, _extraction_job("USEQ"))
    first = {p.name: p.read_bytes() for p in cycle_dir.iterdir()}
    _submit(handler, _extraction_job("USEQ"))
    second = {p.name: p.read_bytes() for p in cycle_dir.iterdir()}

    assert sorted(first) == [
        "Modeling_202503_Moodys_USEQ_Account.csv",
        "Modeling_202503_Moodys_USEQ_Location.csv",
    ]
    assert first == second  # idempotent: a rerun writes byte-identical files
    assert first["Modeling_202503_Moodys_USEQ_Account.csv"].startswith(b"ACCNTNUM,")
    assert account_csv.stat().st_mode & 0o777 != 0o600


def test_a_failure_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    create_sample_source(tmp_path / "source.db", ["USEQ"], date_value=DATE, accounts_per_file=4)
    handler = DataExtractionHandler(_ctx(tmp_path))
    _submit(handler, _extraction_job("USEQ"))
    cycle_dir = tmp_path / "data" / CYCLE
    before = {p.name: p.read_bytes() for p in cycle_dir.iterdir()}

    import batch_pipelines.risk_modeling.sql_jobs as sql_jobs

    def _boom(value):
        raise OSError("disk full")

    monkeypatch.setattr(sql_jobs, "_cell", _boom)
    with pytest.raises(OSError, match="disk full"):
        _submit(handler, _extraction_job("USEQ"))
    assert {p.name: p.read_bytes() for p in cycle_dir.iterdir()} == before


def test_an_unknown_import_file_is_a_permanent_error_naming_it(tmp_path):
    create_sample_source(tmp_path / "source.db", ["USEQ"], date_value=DATE, accounts_per_file=2)
    handler = DataExtractionHandler(_ctx(tmp_path))
    with pytest.raises(JobError, match="'USXX'") as raised:
        _submit(handler, _extraction_job("USXX"))
    assert raised.value.code == "BP-SQL-JOB"
    with pytest.raises(JobError, match="date 202412"):
        _submit(handler, _extraction_job("USEQ", date_value="202412"))
    assert not (tmp_path / "data" / CYCLE / "Modeling_202503_Moodys_USXX_Account.csv").exists()


def test_a_missing_source_database_is_an_error_and_is_not_created(tmp_path):
    handler = DataExtractionHandler(_ctx(tmp_path))
    with pytest.raises(SqlJobError, match="source database not found"):
        _submit(handler, _extraction_job("USEQ"))
    assert not (tmp_path / "source.db").exists()


def test_a_cycle_can_bring_its_own_extraction_sql(tmp_path):
    create_sample_source(tmp_path / "source.db", ["USEQ"], date_value=DATE, accounts_per_file=3)
    sql_dir = tmp_path / "data" / CYCLE / "sql"
    sql_dir.mkdir(parents=True)
    (sql_dir / "data_extraction_accounts.sql").write_text(
        "SELECT account_number AS ACCNTNUM, account_name AS ACCNTNAME FROM accounts "
        "WHERE import_file = :import_file AND as_of_month = :date_value ORDER BY account_number"
    )
    outcome = _submit(DataExtractionHandler(_ctx(tmp_path)), _extraction_job("USEQ"))
    assert list(_rows(Path(outcome.response["account_csv"]))[0]) == ["ACCNTNUM", "ACCNTNAME"]


# --------------------------------------------------------------------------- Portfolio Mapping


def _extract(tmp_path: Path, programs: dict[str, list[str]], **kwargs: int) -> None:
    create_sample_source(tmp_path / "source.db", programs, date_value=DATE, **kwargs)
    handler = DataExtractionHandler(_ctx(tmp_path))
    for import_file in programs:
        _submit(handler, _extraction_job(import_file))


def test_configured_sub_portfolios_hold_the_accounts_of_their_program():
    job = _mapping_job("USEQ", ["USEQ_Condo", "USEQ_Renters", "USEQ_Geico"])
    accounts = [
        {"ACCNTNUM": "A1", "USERDEF1": "Condo"},
        {"ACCNTNUM": "A2", "USERDEF1": "renters"},
        {"ACCNTNUM": "A3", "USERDEF1": "Condo"},
    ]
    locations = [{"ACCNTNUM": "A1"}, {"ACCNTNUM": "A1"}, {"ACCNTNUM": "A2"}, {"ACCNTNUM": "A3"}]
    plans = plan_sub_portfolios(job, accounts, locations)
    assert [(p.name, p.rule, p.segment, p.accounts, p.locations) for p in plans] == [
        ("USEQ_Condo", "program", "Condo", ("A1", "A3"), 3),
        ("USEQ_Renters", "program", "Renters", ("A2",), 1),
        ("USEQ_Geico", "program", "Geico", (), 0),
    ]


def test_without_configured_sub_portfolios_the_base_is_split_by_state_or_country():
    job = _mapping_job("CBHU", [])
    locations = [
        {"ACCNTNUM": "A1", "STATECODE": "FL", "CNTRYCODE": "US"},
        {"ACCNTNUM": "A1", "STATECODE": "", "CNTRYCODE": "PR"},
        {"ACCNTNUM": "A2", "STATECODE": "FL", "CNTRYCODE": "US"},
        {"ACCNTNUM": "A3", "STATECODE": "", "CNTRYCODE": "bs"},
    ]
    plans = plan_sub_portfolios(job, [], locations)
    assert [(p.name, p.rule, p.accounts, p.locations) for p in plans] == [
        ("CBHU_BS", "region", ("A3",), 1),
        ("CBHU_FL", "region", ("A1", "A2"), 2),
        ("CBHU_PR", "region", ("A1",), 1),
    ]
    long = plan_sub_portfolios(_mapping_job("B" * 45, []), [], locations[:1])
    assert long[0].name == "B" * 37 + "_FL" and len(long[0].name) == 40


def test_mapping_creates_the_sub_portfolios_once_even_when_run_twice(tmp_path):
    _extract(tmp_path, {"USEQ": ["Condo", "Renters"]}, accounts_per_file=6, locations_per_account=1)
    base_id = _databridge_with_base(tmp_path / "databridge.db")
    handler = PortfolioMappingHandler(_ctx(tmp_path))
    assert isinstance(handler, JobHandler) and handler.execution == "sync"
    # Every EDM lives on a Data Bridge server: "Store in Data Bridge? = N" does not stop it.
    job = _mapping_job("USEQ", ["USEQ_Condo", "USEQ_Renters"], store=False)

    first = _submit(handler, job)
    after_first = _portfolios(tmp_path / "databridge.db")
    second = _submit(handler, job)

    assert first.status == second.status == JobStatus.FINISHED
    assert (first.response["created"], first.response["existing"]) == (2, 0)
    assert (second.response["created"], second.response["existing"]) == (0, 2)
    assert first.response["accounts_mapped"] == 6
    assert _portfolios(tmp_path / "databridge.db") == after_first
    assert set(after_first) == {"USEQ", "USEQ_Condo", "USEQ_Renters"}
    db = sqlite3.connect(tmp_path / "databridge.db")
    links = db.execute(
        "SELECT portfolio_name, base_portfolio_id, rule, segment, accounts FROM sub_portfolio_links ORDER BY portfolio_name"
    ).fetchall()
    members = db.execute("SELECT count(*) FROM sub_portfolio_accounts").fetchone()[0]
    db.close()
    assert links == [
        ("USEQ_Condo", base_id, "program", "Condo", 3),
        ("USEQ_Renters", base_id, "program", "Renters", 3),
    ]
    assert members == 6


def test_mapping_derives_region_sub_portfolios_when_none_are_configured(tmp_path):
    _extract(tmp_path, {"USHU": []}, accounts_per_file=8, locations_per_account=2)
    _databridge_with_base(tmp_path / "databridge.db", base="USHU")
    outcome = _submit(PortfolioMappingHandler(_ctx(tmp_path)), _mapping_job("USHU", []))
    states = {
        row["STATECODE"]
        for row in _rows(tmp_path / "data" / CYCLE / "Modeling_202503_Moodys_USHU_Location.csv")
    }
    assert outcome.request["rule"] == "region"
    assert outcome.response["created_names"] == [f"USHU_{s}" for s in sorted(states)]


def test_mapping_rolls_back_everything_when_one_insert_fails(tmp_path):
    _extract(tmp_path, {"USEQ": ["Condo", "Renters"]}, accounts_per_file=4, locations_per_account=1)
    _databridge_with_base(tmp_path / "databridge.db")
    db = sqlite3.connect(tmp_path / "databridge.db")
    db.execute(
        "CREATE TRIGGER no_renters BEFORE INSERT ON portfolios WHEN NEW.name = 'USEQ_Renters' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    db.commit()
    db.close()
    with pytest.raises(SqlJobError, match="refused"):
        _submit(
            PortfolioMappingHandler(_ctx(tmp_path)),
            _mapping_job("USEQ", ["USEQ_Condo", "USEQ_Renters"]),
        )
    assert set(_portfolios(tmp_path / "databridge.db")) == {"USEQ"}


def test_mapping_names_what_is_missing(tmp_path):
    handler = PortfolioMappingHandler(_ctx(tmp_path))
    with pytest.raises(SqlJobError, match="run Data Extraction"):
        _submit(handler, _mapping_job("USEQ", ["USEQ_Condo"]))
    _extract(tmp_path, {"USEQ": ["Condo"]}, accounts_per_file=2)
    with pytest.raises(SqlJobError, match="Data Bridge database not found"):
        _submit(handler, _mapping_job("USEQ", ["USEQ_Condo"]))
    _databridge_with_base(tmp_path / "databridge.db", base="OTHER")
    with pytest.raises(SqlJobError, match="base portfolio 'USEQ' not found"):
        _submit(handler, _mapping_job("USEQ", ["USEQ_Condo"]))


def test_mapping_quotes_in_names_are_data_not_sql(tmp_path):
    base = "O'Brien"
    _extract(
        tmp_path,
        {base: ["x'); DELETE FROM portfolios; --"]},
        accounts_per_file=2,
        locations_per_account=1,
    )
    _databridge_with_base(tmp_path / "databridge.db", base=base)
    sub = "O'Brien_x'); DELETE FROM portfolios; --"
    outcome = _submit(PortfolioMappingHandler(_ctx(tmp_path)), _mapping_job(base, [sub]))
    assert outcome.response["created_names"] == [sub]
    assert outcome.response["accounts_mapped"] == 2
    assert set(_portfolios(tmp_path / "databridge.db")) == {base, sub}


async def _simulator_with_base(sim: RiskModelerSimulator) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app),
        base_url="http://sim",
        headers={"Authorization": sim.api_key},
    )
    created = await client.post(
        "/riskmodeler/v2/datasources",
        params={"datasourcename": EDM, "servername": "databridge-1", "operation": "CREATE"},
    )
    assert created.status_code == 202, created.text
    assert (await client.get(f"/riskmodeler/v2/datasources/{EDM}")).status_code == 200
    portfolio = await client.post(
        "/riskmodeler/v2/portfolios",
        params={"datasource": EDM},
        json={"name": "USEQ", "number": "USEQ"},
    )
    assert portfolio.status_code == 201, portfolio.text
    return client


def test_mapping_works_against_the_risk_modeler_simulators_database_while_it_serves(tmp_path):
    _extract(
        tmp_path,
        {"USEQ": ["Condo", "Renters", "Manufactured"]},
        accounts_per_file=6,
        locations_per_account=2,
    )
    sim_db = tmp_path / "sim" / "risk_modeler.db"
    sim = RiskModelerSimulator(sim_db, workflow_seconds=(0, 0, 0))
    handler = PortfolioMappingHandler(_ctx(tmp_path, databridge=sim_db))
    job = _mapping_job("USEQ", ["USEQ_Condo", "USEQ_Renters", "USEQ_Manufactured"])

    async def scenario() -> tuple[Any, Any, list[dict[str, Any]]]:
        client = await _simulator_with_base(sim)
        try:
            first = await handler.submit(_job(job))
            again = await handler.submit(_job(job))
            listed = await client.get("/riskmodeler/v2/portfolios", params={"datasource": EDM})
            assert listed.status_code == 200
            return first, again, listed.json()["searchItems"]
        finally:
            await client.aclose()

    try:
        first, again, items = asyncio.run(scenario())
    finally:
        sim.close()
    assert (first.response["created"], again.response["created"], again.response["existing"]) == (
        3,
        0,
        3,
    )
    by_name = {item["name"]: item for item in items}
    assert set(by_name) == {"USEQ", "USEQ_Condo", "USEQ_Renters", "USEQ_Manufactured"}
    assert all(by_name[name]["datasource"] == EDM for name in by_name)
    assert by_name["USEQ_Condo"]["description"] == "Sub-portfolio of USEQ: program Condo"
    if "accountsCount" in by_name["USEQ_Condo"]:  # the simulator reports the counts mapping filled
        assert by_name["USEQ_Condo"]["accountsCount"] == 2
