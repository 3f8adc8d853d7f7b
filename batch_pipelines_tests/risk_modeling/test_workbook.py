"""The master configuration workbook: every rule of the issue, each pinned to its cell."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.risk_modeling.sample_workbook import (
    WorkbookSpec,
    expected_job_counts,
    valid_workbook,
)
from batch_pipelines.risk_modeling.workbook import (
    ISSUE_CODES,
    WorkbookInvalid,
    WorkbookIssue,
    load_workbook_configuration,
    parse_workbook,
    validate_workbook,
)

FIXTURE = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "fixtures"
    / "valid_excel_configuration.xlsx"
)

HU = "RM_EDM_202503_Quarterly_USHU"
EQ = "RM_EDM_202503_Quarterly_USEQ"


def where(issue: WorkbookIssue) -> tuple[str | None, int | None, str | None, str]:
    return (issue.sheet, issue.row, issue.column, issue.code)


# --------------------------------------------------------------------------- valid


def test_the_builders_valid_workbook_has_no_issues_and_the_expected_job_counts(write):
    result = validate_workbook(write(valid_workbook()))

    assert result.issues == []
    assert result.valid
    assert result.job_counts == expected_job_counts(1)


def test_a_scaled_workbook_multiplies_every_job_count(write):
    result = validate_workbook(write(valid_workbook(scale=3)))

    assert result.valid, [str(i) for i in result.issues]
    assert result.job_counts == expected_job_counts(3)


def test_the_configuration_keeps_excel_types_and_rows(write):
    config = load_workbook_configuration(write(valid_workbook()))

    assert config.metadata.current_date_value == "202503"
    assert config.metadata.edm_data_version == "23.0.0"
    assert config.metadata.dlm_model_version == 23
    assert config.metadata.inland_flood_hd_model_version == 1.2
    assert config.metadata.validate_dlm_model_versions is True
    assert config.metadata.validate_hd_model_versions is False
    assert [(d.name, d.row, d.store_in_data_bridge) for d in config.databases] == [
        (HU, 2, True),
        (EQ, 3, False),
    ]
    treaty = config.treaties[0]
    assert (treaty.inception_date, treaty.expiration_date) == (date(2000, 1, 1), date(2030, 12, 31))
    assert treaty.type == "Working Excess"
    # The HD analysis has no event rate scheme; its whitespace-rich reference names survive.
    assert config.analyses[5].event_rate is None
    assert config.analyses[4].event_rate == "RMS 17.0 NA   Stochastic Event Rates"
    kinds = {g.name: [i.kind for i in g.items] for g in config.groupings}
    assert kinds["202503_USHU_Portfolios_Group"] == ["portfolio", "portfolio"]
    assert kinds["202503_All_Group"] == ["group", "group", "analysis"]
    assert kinds["202503_Empty_Group"] == []
    assert config.model_dump(mode="json")["metadata"]["current_date_value"] == "202503"


def test_extra_sheets_and_unknown_columns_are_ignored(write):
    spec = valid_workbook()
    spec.extra_sheets["Notes"] = [["anything", 1, None, "#N/A"]]
    spec.set("Databases", 1, "C", "Comment").set("Databases", 2, "C", "first EDM")

    assert validate_workbook(write(spec)).valid


def test_sheet_and_header_names_are_matched_ignoring_case_spacing_and_curly_apostrophes(write):
    spec = valid_workbook().rename_sheet("Moody's Reference Data", "Moody\u2019s  reference data")
    spec.set("Portfolios", 1, "Base Portfolio?", " base portfolio? ")

    assert validate_workbook(write(spec)).valid


def test_numbers_typed_into_name_cells_are_read_as_text(write):
    spec = valid_workbook().set("Reinsurance Treaties", 2, "Treaty Number", 12345)

    config = load_workbook_configuration(write(spec))

    assert config.treaties[0].number == "12345"


def test_blank_rows_are_skipped_and_issues_keep_excel_row_numbers(write):
    spec = valid_workbook().insert_row("Portfolios", 3)  # USHU_Leak moves to row 4
    spec.set("Portfolios", 4, "Base Portfolio?", "maybe")

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [("Portfolios", 4, "Base Portfolio?", "INVALID_CHOICE")]


def test_iso_text_dates_are_accepted(write):
    spec = valid_workbook().set("Reinsurance Treaties", 2, "Inception Date", "2001-02-03")

    config = load_workbook_configuration(write(spec))

    assert config.treaties[0].inception_date == date(2001, 2, 3)


# --------------------------------------------------------------------------- single faults


@dataclass(frozen=True)
class Fault:
    id: str
    edit: Callable[[WorkbookSpec], object]
    sheet: str | None
    row: int | None
    column: str | None
    code: str
    mentions: str  # the message must name the offending value


def _analysis_row(name: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "Database": HU,
        "Portfolio": "USHU_Full",
        "Analysis Name": name,
        "Analysis Profile": "DLM USHU_Full (85% SS) v23",
        "Output Profile": "Modeling_Output_Profile",
        "Event Rate": "RMS 2023 Historical Event Rates",
        "Tag 1": "tag",
    }
    row.update(changes)
    return row


MD, DB, PF, TR, GH, AT, GR, PP, RD, EG = (
    "Metadata",
    "Databases",
    "Portfolios",
    "Reinsurance Treaties",
    "GeoHaz Thresholds",
    "Analysis Table",
    "Groupings",
    "Products and Perils",
    "Moody's Reference Data",
    "ExposureGroup <-> Portname",
)

FAULTS = [
    # Metadata: 12 required keys, typed values.
    Fault(
        "metadata key missing",
        lambda s: s.delete_metadata("Hazard Version"),
        MD,
        None,
        "A",
        "MISSING_KEY",
        "Hazard Version",
    ),
    Fault(
        "metadata key twice",
        lambda s: s.add_row(MD, ["Cycle Type", "Annual"]),
        MD,
        13,
        "A",
        "DUPLICATE",
        "Cycle Type",
    ),
    Fault(
        "current date as a number",
        lambda s: s.set_metadata("Current Date Value", 202503),
        MD,
        1,
        "B",
        "WRONG_TYPE",
        "202503",
    ),
    Fault(
        "current date not YYYYMM",
        lambda s: s.set_metadata("Current Date Value", "2025-03"),
        MD,
        1,
        "B",
        "PATTERN",
        "2025-03",
    ),
    Fault(
        "current date month 13",
        lambda s: s.set_metadata("Current Date Value", "202513"),
        MD,
        1,
        "B",
        "PATTERN",
        "202513",
    ),
    Fault(
        "EDM data version as a number",
        lambda s: s.set_metadata("EDM Data Version", 23),
        MD,
        2,
        "B",
        "WRONG_TYPE",
        "23",
    ),
    Fault(
        "geocode version not a version",
        lambda s: s.set_metadata("Geocode Version", "v23"),
        MD,
        3,
        "B",
        "PATTERN",
        "v23",
    ),
    Fault(
        "hazard version blank",
        lambda s: s.set_metadata("Hazard Version", None),
        MD,
        4,
        "B",
        "REQUIRED",
        "Hazard Version",
    ),
    Fault(
        "DLM model version as text",
        lambda s: s.set_metadata("DLM Model Version", "23"),
        MD,
        5,
        "B",
        "WRONG_TYPE",
        "'23'",
    ),
    Fault(
        "validate DLM not Y/N",
        lambda s: s.set_metadata("Validate DLM Model Versions?", "Yes"),
        MD,
        6,
        "B",
        "INVALID_CHOICE",
        "Yes",
    ),
    Fault(
        "SCS HD version not whole",
        lambda s: s.set_metadata("SCS HD Model Version", 1.5),
        MD,
        8,
        "B",
        "WRONG_TYPE",
        "1.5",
    ),
    Fault(
        "inland flood version as text",
        lambda s: s.set_metadata("Inland Flood HD Model Version", "one"),
        MD,
        9,
        "B",
        "WRONG_TYPE",
        "one",
    ),
    Fault(
        "export RDM name blank",
        lambda s: s.set_metadata("Export RDM Name", "  "),
        MD,
        11,
        "B",
        "REQUIRED",
        "Export RDM Name",
    ),
    # Values that become folder, file or partition names must be safe names.
    Fault(
        "cycle type climbing out of the data folder",
        lambda s: s.set_metadata("Cycle Type", "/../../../../../outside/pwn"),
        MD,
        12,
        "B",
        "UNSAFE_NAME",
        "Cycle Type '/../../../../../outside/pwn'",
    ),
    Fault(
        "cycle type too long for a cycle name",
        lambda s: s.set_metadata("Cycle Type", "Q" * 94),
        MD,
        12,
        "B",
        "UNSAFE_NAME",
        "94 characters long",
    ),
    Fault(
        "export RDM name with a path separator",
        lambda s: s.set_metadata("Export RDM Name", "RM_RDM/../exports"),
        MD,
        11,
        "B",
        "UNSAFE_NAME",
        "Export RDM Name",
    ),
    Fault(
        "database name with a path in its suffix",
        lambda s: s.replace_everywhere(EQ, "RM_EDM_202503_../../USEQ"),
        DB,
        3,
        "Database",
        "UNSAFE_NAME",
        "RM_EDM_202503_../../USEQ",
    ),
    Fault(
        "import file with a path",
        lambda s: s.add_row(PF, ["X", HU, "../../x", "N"]),
        PF,
        7,
        "Import File",
        "UNSAFE_NAME",
        "'../../x'",
    ),
    # A formula whose result was never saved is not an empty cell.
    Fault(
        "metadata formula without a saved value",
        lambda s: s.set_metadata("Hazard Version", "=B2"),
        MD,
        4,
        "B",
        "FORMULA_WITHOUT_VALUE",
        "formula '=B2'",
    ),
    Fault(
        "table formula without a saved value",
        lambda s: s.set(TR, 2, "Currency", '=CONCAT("U","SD")'),
        TR,
        2,
        "Currency",
        "FORMULA_WITHOUT_VALUE",
        "Currency holds the formula",
    ),
    # Databases: unique names of the EDM pattern, Y/N flag, each with a base portfolio.
    Fault(
        "database name pattern",
        lambda s: s.replace_everywhere(EQ, "EDM_202503_USEQ"),
        DB,
        3,
        "Database",
        "PATTERN",
        "EDM_202503_USEQ",
    ),
    Fault(
        "database name without suffix",
        lambda s: s.replace_everywhere(EQ, "RM_EDM_202503_"),
        DB,
        3,
        "Database",
        "PATTERN",
        "RM_EDM_202503_",
    ),
    Fault("database twice", lambda s: s.add_row(DB, [HU, "N"]), DB, 4, "Database", "DUPLICATE", HU),
    Fault(
        "store in data bridge not Y/N",
        lambda s: s.set(DB, 2, "Store in Data Bridge?", "X"),
        DB,
        2,
        "Store in Data Bridge?",
        "INVALID_CHOICE",
        "X",
    ),
    Fault(
        "database without base portfolio",
        lambda s: s.set(PF, 5, "Base Portfolio?", "N"),
        DB,
        3,
        "Database",
        "NO_BASE_PORTFOLIO",
        EQ,
    ),
    # Portfolios: unique, existing database, import file, Y/N base flag.
    Fault(
        "portfolio twice",
        lambda s: s.add_row(PF, ["USHU_Full", HU, "USHU_Full", "N"]),
        PF,
        7,
        "Portfolio",
        "DUPLICATE",
        "USHU_Full",
    ),
    Fault(
        "portfolio of an unknown database",
        lambda s: s.add_row(PF, ["X", "RM_EDM_202503_Nope", "X", "N"]),
        PF,
        7,
        "Database",
        "UNKNOWN_REFERENCE",
        "RM_EDM_202503_Nope",
    ),
    Fault(
        "portfolio without import file",
        lambda s: s.set(PF, 4, "Import File", None),
        PF,
        4,
        "Import File",
        "REQUIRED",
        "Import File",
    ),
    Fault(
        "base portfolio flag not Y/N",
        lambda s: s.set(PF, 4, "Base Portfolio?", "maybe"),
        PF,
        4,
        "Base Portfolio?",
        "INVALID_CHOICE",
        "maybe",
    ),
    # Reinsurance Treaties.
    Fault(
        "treaty name twice",
        lambda s: s.add_row(TR, ["XPR_1_95", "TN-9", *s.sheets[TR][2][2:]]),
        TR,
        4,
        "Treaty Name",
        "DUPLICATE",
        "XPR_1_95",
    ),
    Fault(
        "treaty number twice",
        lambda s: s.set(TR, 3, "Treaty Number", "TN-0-1"),
        TR,
        3,
        "Treaty Number",
        "DUPLICATE",
        "TN-0-1",
    ),
    Fault(
        "treaty type unknown",
        lambda s: s.set(TR, 2, "Type", "Stop Loss"),
        TR,
        2,
        "Type",
        "INVALID_CHOICE",
        "Stop Loss",
    ),
    Fault(
        "treaty limit as text",
        lambda s: s.set(TR, 2, "Per-Risk Limit", "3M"),
        TR,
        2,
        "Per-Risk Limit",
        "WRONG_TYPE",
        "3M",
    ),
    Fault(
        "treaty attachment negative",
        lambda s: s.set(TR, 3, "Attachment Point", -1),
        TR,
        3,
        "Attachment Point",
        "OUT_OF_RANGE",
        "-1",
    ),
    Fault(
        "treaty inception not a date",
        lambda s: s.set(TR, 2, "Inception Date", "someday"),
        TR,
        2,
        "Inception Date",
        "WRONG_TYPE",
        "someday",
    ),
    Fault(
        "treaty expires before inception",
        lambda s: s.set(TR, 2, "Expiration Date", datetime(1999, 12, 31)),
        TR,
        2,
        "Expiration Date",
        "DATE_ORDER",
        "1999-12-31",
    ),
    Fault(
        "treaty expires on inception",
        lambda s: s.set(TR, 3, "Expiration Date", datetime(2000, 1, 1)),
        TR,
        3,
        "Expiration Date",
        "DATE_ORDER",
        "2000-01-01",
    ),
    Fault(
        "treaty currency blank",
        lambda s: s.set(TR, 2, "Currency", None),
        TR,
        2,
        "Currency",
        "REQUIRED",
        "Currency",
    ),
    Fault(
        "treaty % covered above 100",
        lambda s: s.set(TR, 2, "% Covered", 120),
        TR,
        2,
        "% Covered",
        "OUT_OF_RANGE",
        "120",
    ),
    Fault(
        "treaty % place above 100",
        lambda s: s.set(TR, 2, "% Place", 100.5),
        TR,
        2,
        "% Place",
        "OUT_OF_RANGE",
        "100.5",
    ),
    Fault(
        "treaty % share below 0",
        lambda s: s.set(TR, 3, "% Share", -1),
        TR,
        3,
        "% Share",
        "OUT_OF_RANGE",
        "-1",
    ),
    Fault(
        "treaty % retention above 100",
        lambda s: s.set(TR, 3, "% Retention", 101),
        TR,
        3,
        "% Retention",
        "OUT_OF_RANGE",
        "101",
    ),
    Fault(
        "treaty reinstatements not whole",
        lambda s: s.set(TR, 2, "Reinstatements", 1.5),
        TR,
        2,
        "Reinstatements",
        "WRONG_TYPE",
        "1.5",
    ),
    Fault(
        "treaty premium as a boolean",
        lambda s: s.set(TR, 2, "Premium", True),
        TR,
        2,
        "Premium",
        "WRONG_TYPE",
        "TRUE",
    ),
    # GeoHaz Thresholds.
    Fault(
        "geohaz import file unknown",
        lambda s: s.set(GH, 2, "Import File", "Nope"),
        GH,
        2,
        "Import File",
        "UNKNOWN_REFERENCE",
        "Nope",
    ),
    Fault(
        "geohaz threshold above 100",
        lambda s: s.set(GH, 5, "Threshold %", 150),
        GH,
        5,
        "Threshold %",
        "OUT_OF_RANGE",
        "150",
    ),
    Fault(
        "geohaz share as text",
        lambda s: s.set(GH, 3, "% of Grand Total", "high"),
        GH,
        3,
        "% of Grand Total",
        "WRONG_TYPE",
        "high",
    ),
    Fault(
        "geohaz level blank",
        lambda s: s.set(GH, 4, "Geocode Level", ""),
        GH,
        4,
        "Geocode Level",
        "REQUIRED",
        "Geocode Level",
    ),
    # Analysis Table.
    Fault(
        "analysis of an unknown database",
        lambda s: s.set(AT, 2, "Database", "RM_EDM_202503_Nope"),
        AT,
        2,
        "Database",
        "UNKNOWN_REFERENCE",
        "RM_EDM_202503_Nope",
    ),
    Fault(
        "analysis of an unknown portfolio",
        lambda s: s.set(AT, 2, "Portfolio", "Nope"),
        AT,
        2,
        "Portfolio",
        "UNKNOWN_REFERENCE",
        "Nope",
    ),
    Fault(
        "analysis portfolio in another database",
        lambda s: s.set(AT, 2, "Portfolio", "USEQ"),
        AT,
        2,
        "Portfolio",
        "DATABASE_MISMATCH",
        "USEQ",
    ),
    Fault(
        "analysis name twice",
        lambda s: s.add_row(AT, _analysis_row("USHU_Full_LT")),
        AT,
        8,
        "Analysis Name",
        "DUPLICATE",
        "USHU_Full_LT",
    ),
    Fault(
        "analysis profile not in reference data",
        lambda s: s.set(AT, 3, "Analysis Profile", "DLM X"),
        AT,
        3,
        "Analysis Profile",
        "UNKNOWN_REFERENCE",
        "DLM X",
    ),
    Fault(
        "output profile not in reference data",
        lambda s: s.set(AT, 4, "Output Profile", "OP X"),
        AT,
        4,
        "Output Profile",
        "UNKNOWN_REFERENCE",
        "OP X",
    ),
    Fault(
        "event rate not in reference data",
        lambda s: s.set(AT, 5, "Event Rate", "ER X"),
        AT,
        5,
        "Event Rate",
        "UNKNOWN_REFERENCE",
        "ER X",
    ),
    Fault(
        "analysis treaty unknown",
        lambda s: s.set(AT, 2, "Reinsurance Treaty 2", "T X"),
        AT,
        2,
        "Reinsurance Treaty 2",
        "UNKNOWN_REFERENCE",
        "T X",
    ),
    Fault(
        "analysis treaty repeated",
        lambda s: s.set(AT, 2, "Reinsurance Treaty 3", "XPR_1_95"),
        AT,
        2,
        "Reinsurance Treaty 3",
        "DUPLICATE",
        "XPR_1_95",
    ),
    Fault(
        "analysis tag 1 blank",
        lambda s: s.set(AT, 6, "Tag 1", None),
        AT,
        6,
        "Tag 1",
        "REQUIRED",
        "Tag 1",
    ),
    Fault(
        "analysis tag as a date",
        lambda s: s.set(AT, 6, "Tag 2", datetime(2025, 3, 1)),
        AT,
        6,
        "Tag 2",
        "WRONG_TYPE",
        "2025-03-01",
    ),
    # Groupings.
    Fault(
        "group name twice",
        lambda s: s.add_row(GR, ["202503_USHU_LT_Group", "USHU_Full_NT"]),
        GR,
        7,
        "Group_Name",
        "DUPLICATE",
        "202503_USHU_LT_Group",
    ),
    Fault(
        "group named like an analysis",
        lambda s: s.add_row(GR, ["USHU_Full_NT", "USHU_Full_LT"]),
        GR,
        7,
        "Group_Name",
        "DUPLICATE",
        "USHU_Full_NT",
    ),
    Fault(
        "group item unknown",
        lambda s: s.set(GR, 2, "Item2", "Nope"),
        GR,
        2,
        "Item2",
        "UNKNOWN_REFERENCE",
        "Nope",
    ),
    Fault(
        "group item is a later group",
        lambda s: s.set(GR, 2, "Item4", "202503_All_Group"),
        GR,
        2,
        "Item4",
        "FORWARD_GROUP_REFERENCE",
        "202503_All_Group",
    ),
    Fault(
        "group item is the group itself",
        lambda s: s.set(GR, 3, "Item3", "202503_USEQ_Group"),
        GR,
        3,
        "Item3",
        "FORWARD_GROUP_REFERENCE",
        "202503_USEQ_Group",
    ),
    Fault(
        "group item is an empty group",
        lambda s: s.set(GR, 6, "Item4", "202503_Empty_Group"),
        GR,
        6,
        "Item4",
        "EMPTY_GROUP_REFERENCE",
        "202503_Empty_Group",
    ),
    Fault(
        "group item repeated",
        lambda s: s.set(GR, 2, "Item50", "USHU_Full_LT"),
        GR,
        2,
        "Item50",
        "DUPLICATE",
        "USHU_Full_LT",
    ),
    # Products and Perils.
    Fault(
        "product of an unknown analysis",
        lambda s: s.set(PP, 2, "Analysis Name", "Nope"),
        PP,
        2,
        "Analysis Name",
        "UNKNOWN_REFERENCE",
        "Nope",
    ),
    Fault(
        "peril and product group pair twice",
        lambda s: s.set(PP, 3, "Product Group", "Other"),
        PP,
        3,
        "Product Group",
        "DUPLICATE",
        "Other",
    ),
    # Moody's Reference Data.
    Fault(
        "reference data cell holds an Excel error",
        lambda s: s.set(RD, 6, "Model Profiles", "#N/A"),
        RD,
        6,
        "Model Profiles",
        "CELL_ERROR",
        "#N/A",
    ),
    # ExposureGroup <-> Portname.
    Fault(
        "exposure group twice",
        lambda s: s.set(EG, 3, "ExposureGroup", "USHU_Hurricane_Full"),
        EG,
        3,
        "ExposureGroup",
        "DUPLICATE",
        "USHU_Hurricane_Full",
    ),
    Fault(
        "portname twice",
        lambda s: s.set(EG, 3, "Portname", "USHU"),
        EG,
        3,
        "Portname",
        "DUPLICATE",
        "USHU",
    ),
    Fault(
        "portname blank",
        lambda s: s.set(EG, 2, "Portname", None),
        EG,
        2,
        "Portname",
        "REQUIRED",
        "Portname",
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_each_single_fault_copy_fails_with_the_right_sheet_row_column_and_code(fault: Fault, write):
    spec = valid_workbook()
    fault.edit(spec)

    result = validate_workbook(write(spec))

    assert not result.valid
    assert result.configuration is None
    assert result.job_counts == {}
    assert [where(i) for i in result.issues] == [(fault.sheet, fault.row, fault.column, fault.code)]
    assert fault.mentions in result.issues[0].message


def test_every_fault_code_is_documented():
    assert {f.code for f in FAULTS} <= set(ISSUE_CODES)


def test_all_errors_are_collected_at_once_in_sheet_then_row_order(write):
    spec = valid_workbook()
    spec.set("ExposureGroup <-> Portname", 3, "Portname", "USHU")
    spec.set("Groupings", 2, "Item2", "Nope")
    spec.set("Analysis Table", 3, "Event Rate", "ER X").set("Analysis Table", 3, "Tag 1", None)
    spec.set("Reinsurance Treaties", 2, "% Covered", 120).set(
        "Reinsurance Treaties", 2, "Type", "Stop Loss"
    )
    spec.set("Portfolios", 4, "Base Portfolio?", "maybe")
    spec.set("Databases", 2, "Store in Data Bridge?", "X")
    spec.set_metadata("DLM Model Version", "x").delete_metadata("Cycle Type")

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [
        ("Metadata", None, "A", "MISSING_KEY"),
        ("Metadata", 5, "B", "WRONG_TYPE"),
        ("Databases", 2, "Store in Data Bridge?", "INVALID_CHOICE"),
        ("Portfolios", 4, "Base Portfolio?", "INVALID_CHOICE"),
        ("Reinsurance Treaties", 2, "Type", "INVALID_CHOICE"),
        ("Reinsurance Treaties", 2, "% Covered", "OUT_OF_RANGE"),
        ("Analysis Table", 3, "Event Rate", "UNKNOWN_REFERENCE"),
        ("Analysis Table", 3, "Tag 1", "REQUIRED"),
        ("Groupings", 2, "Item2", "UNKNOWN_REFERENCE"),
        ("ExposureGroup <-> Portname", 3, "Portname", "DUPLICATE"),
    ]


def test_load_raises_workbook_invalid_carrying_every_issue(write):
    spec = (
        valid_workbook()
        .set("Databases", 2, "Store in Data Bridge?", "X")
        .set("Portfolios", 4, "Import File", None)
    )
    path = write(spec)

    with pytest.raises(WorkbookInvalid) as raised:
        load_workbook_configuration(path)

    assert isinstance(raised.value, ConfigurationError)
    assert [i.code for i in raised.value.issues] == ["INVALID_CHOICE", "REQUIRED"]
    assert "2 errors" in str(raised.value)
    assert raised.value.to_dict()["details"]["issues"][0]["sheet"] == "Databases"


def test_issue_text_reads_sheet_row_column_code_and_message():
    issue = WorkbookIssue(
        sheet="Portfolios", row=5, column="Database", code="UNKNOWN_REFERENCE", message="m"
    )
    assert str(issue) == "Portfolios!5 Database: [UNKNOWN_REFERENCE] m"
    assert (
        str(WorkbookIssue(sheet="Metadata", column="A", code="MISSING_KEY", message="m"))
        == "Metadata A: [MISSING_KEY] m"
    )
    assert str(WorkbookIssue(code="FILE_NOT_FOUND", message="m")) == "[FILE_NOT_FOUND] m"


# --------------------------------------------------------------------------- whole-file errors


def test_a_missing_file_is_a_clear_error(tmp_path):
    configuration, issues = parse_workbook(tmp_path / "absent.xlsx")

    assert configuration is None
    assert [(i.code, i.sheet) for i in issues] == [("FILE_NOT_FOUND", None)]
    assert "absent.xlsx" in issues[0].message


@pytest.mark.parametrize(
    "content, hint",
    [
        (b"Database,Store in Data Bridge?\nRM_EDM_202503_X,Y\n", "CSV"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, ".xls"),
        (b"", "empty"),
    ],
    ids=["csv text", "old xls", "zero bytes"],
)
def test_a_file_that_is_not_an_xlsx_is_a_clear_error(tmp_path, content, hint):
    path = tmp_path / "configuration.xlsx"
    path.write_bytes(content)

    issues = validate_workbook(path).issues

    assert [i.code for i in issues] == ["NOT_XLSX"]
    assert hint in issues[0].message


def test_a_zip_that_is_not_a_workbook_is_not_an_xlsx(tmp_path):
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    assert [i.code for i in validate_workbook(path).issues] == ["NOT_XLSX"]


def test_a_directory_is_not_an_xlsx(tmp_path):
    assert [i.code for i in validate_workbook(tmp_path).issues] == ["NOT_XLSX"]


def test_an_empty_workbook_is_one_clear_error(tmp_path):
    path = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(path)

    issues = validate_workbook(path).issues

    assert [where(i) for i in issues] == [(None, None, None, "EMPTY_WORKBOOK")]


def test_a_missing_sheet_is_one_clear_error(write):
    issues = validate_workbook(write(valid_workbook().remove_sheet("Portfolios"))).issues

    assert [where(i) for i in issues] == [("Portfolios", None, None, "MISSING_SHEET")]


def test_every_missing_sheet_is_reported(write):
    spec = valid_workbook().remove_sheet("Groupings").remove_sheet("Metadata")

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [
        ("Metadata", None, None, "MISSING_SHEET"),
        ("Groupings", None, None, "MISSING_SHEET"),
    ]


def test_an_empty_sheet_is_one_clear_error(write):
    spec = valid_workbook()
    spec.sheets["Reinsurance Treaties"] = []

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [("Reinsurance Treaties", None, None, "EMPTY_SHEET")]


def test_a_missing_column_is_one_clear_error_at_the_header_row(write):
    spec = valid_workbook().remove_column("Analysis Table", "Analysis Name")

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [("Analysis Table", 1, "Analysis Name", "MISSING_COLUMN")]
    assert "'Analysis Name'" in issues[0].message


def test_rows_of_a_sheet_with_a_missing_column_are_still_checked(write):
    spec = valid_workbook().remove_column("Reinsurance Treaties", "Premium")
    spec.set("Reinsurance Treaties", 3, "Type", "Stop Loss")

    issues = validate_workbook(write(spec)).issues

    assert [where(i) for i in issues] == [
        ("Reinsurance Treaties", 1, "Premium", "MISSING_COLUMN"),
        ("Reinsurance Treaties", 3, "Type", "INVALID_CHOICE"),
    ]


def test_producer_and_tags_columns_are_optional(write):
    spec = (
        valid_workbook()
        .remove_column("Reinsurance Treaties", "Tags")
        .remove_column("Reinsurance Treaties", "Producer")
    )

    assert validate_workbook(write(spec)).valid


def test_a_wrong_type_names_the_column_the_expected_type_and_the_value(write):
    spec = valid_workbook().set("Reinsurance Treaties", 2, "Per-Risk Limit", "3M")

    (issue,) = validate_workbook(write(spec)).issues

    assert str(issue) == (
        "Reinsurance Treaties!2 Per-Risk Limit: [WRONG_TYPE] Per-Risk Limit must be a number, found the text '3M'"
    )


def test_a_databases_sheet_without_databases_is_an_error(write):
    spec = valid_workbook()
    spec.sheets["Databases"] = spec.sheets["Databases"][:1]

    issues = validate_workbook(write(spec)).issues

    assert ("Databases", 2, "Database", "NO_ROWS") in [where(i) for i in issues]


def test_parsing_reads_the_file_and_writes_nothing(write, tmp_path):
    path = write(valid_workbook())
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    validate_workbook(path)
    validate_workbook(path.with_name("absent.xlsx"))

    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


# --------------------------------------------------------------------------- conformance


@pytest.mark.skipif(
    not FIXTURE.exists() and os.environ.get("CI") != "true",
    reason="shared fixture workbook not available outside CI",
)
def test_fixture_workbook_gives_the_published_job_counts():
    result = validate_workbook(FIXTURE)

    assert [str(i) for i in result.issues] == []
    assert result.job_counts == {
        "Data Extraction": 11,
        "EDM Creation": 7,
        "Portfolio Creation": 11,
        "MRI Import": 11,
        "Create Reinsurance Treaties": 18,
        "EDM DB Upgrade": 7,
        "GeoHaz": 11,
        "Portfolio Mapping": 11,
        "Analysis": 93,
        "Grouping": 88,
        "Grouping Rollup": 8,
        "Export to RDM": 189,
    }
    assert sum(result.job_counts.values()) == 465


def test_an_oversized_cell_is_echoed_shortened_with_its_length(write):
    huge = "ER " + "x" * 32_000  # near the 32,767 characters a cell holds
    result = validate_workbook(write(valid_workbook().set(AT, 2, "Event Rate", huge)))

    (issue,) = result.issues
    assert where(issue) == (AT, 2, "Event Rate", "UNKNOWN_REFERENCE")
    assert "(32003 characters)" in issue.message
    assert len(issue.message) < 300


def test_a_workbook_without_formulas_is_read_once(write, monkeypatch):
    calls = []
    real = openpyxl.load_workbook

    def counting(*args, **kwargs):
        calls.append(kwargs.get("data_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(openpyxl, "load_workbook", counting)
    spec = valid_workbook().set(TR, 2, "Currency", None)  # an empty cell, not a formula

    (issue,) = validate_workbook(write(spec)).issues

    assert issue.code == "REQUIRED" and calls == [True]
