"""Write master-configuration workbooks from Python data: the demo's generated cycle, test fixtures and benchmarks.

Tests must not depend on the shared fixture, and single-fault copies are far clearer when
written as "this valid workbook, with this one cell changed" than as binary files. The
builder states the format independently of the parser (its own sheet and header lists), so
a parser that drifted from the format would fail here rather than agree with itself.

A valid workbook is made of ``scale`` identical units (names suffixed ``_1``, ``_2``... after
the first), so the job counts are known exactly for any scale: see ``expected_job_counts``.

Layout of one unit at scale 1 (Excel rows):

- Metadata rows 1-12, in the order of ``METADATA``.
- Databases: 2 USHU (store Y), 3 USEQ (store N).
- Portfolios: 2 USHU_Full (base), 3 USHU_Leak (base), 4 USHU_Full_Other (sub of USHU_Full),
  5 USEQ (base), 6 USEQ_Condo (sub of USEQ).
- Reinsurance Treaties: 2 XPR_1_95 (Working Excess), 3 QS_75 (Quota Share).
- GeoHaz Thresholds: rows 2-10, three levels for each base import file.
- Analysis Table: 2 USHU_Full_LT, 3 USHU_Full_NT, 4 USHU_Full_Other_LT, 5 USHU_Leak_LT,
  6 USEQ, 7 USEQ_Condo (HD profile, blank Event Rate).
- Groupings: 2 analyses group, 3 analyses group, 4 portfolios group, 5 empty group,
  6 rollup of rows 2 and 3 plus an analysis.
- Products and Perils rows 2-5; Moody's Reference Data rows 2-6 (lists of 4, 2, 5 names);
  ExposureGroup <-> Portname rows 2-3. An extra "Validations" sheet must be ignored.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import column_index_from_string

METADATA_SHEET = "Metadata"
SHEET_HEADERS: dict[str, list[str]] = {
    "Databases": ["Database", "Store in Data Bridge?"],
    "Portfolios": ["Portfolio", "Database", "Import File", "Base Portfolio?"],
    "Reinsurance Treaties": [
        "Treaty Name",
        "Treaty Number",
        "Type",
        "Per-Risk Limit",
        "Occurrence Limit",
        "Attachment Point",
        "Inception Date",
        "Expiration Date",
        "Currency",
        "Attachment Basis",
        "Exposure Level",
        "% Covered",
        "% Place",
        "% Share",
        "% Retention",
        "Premium",
        "Reinstatements",
        "% Reinstatement Charge",
        "Aggregate Limit",
        "Aggregate Deductible Amount",
        "Inuring Priority",
        "Producer",
        "Tags",
    ],
    "GeoHaz Thresholds": ["Geocode Level", "Import File", "% of Grand Total", "Threshold %"],
    "Analysis Table": [
        "Database",
        "Portfolio",
        "Analysis Name",
        "Analysis Profile",
        "Output Profile",
        "Event Rate",
        *(f"Reinsurance Treaty {i}" for i in range(1, 6)),
        *(f"Tag {i}" for i in range(1, 6)),
    ],
    "Groupings": ["Group_Name", *(f"Item{i}" for i in range(1, 51))],
    "Products and Perils": ["Analysis Name", "Peril", "Product Group"],
    "Moody's Reference Data": ["Model Profiles", "Output Profiles", "Event Rate Schemes"],
    "ExposureGroup <-> Portname": ["ExposureGroup", "Portname"],
}
SHEETS: list[str] = [METADATA_SHEET, *SHEET_HEADERS]

METADATA: list[tuple[str, Any]] = [
    ("Current Date Value", "202503"),
    ("EDM Data Version", "23.0.0"),
    ("Geocode Version", "23.0.0"),
    ("Hazard Version", "23.0.0"),
    ("DLM Model Version", 23),
    ("Validate DLM Model Versions?", "Y"),
    ("Wildfire HD Model Version", 2),
    ("SCS HD Model Version", 1),
    ("Inland Flood HD Model Version", 1.2),
    ("Validate HD Model Versions?", "N"),
    ("Export RDM Name", "RM_RDM_202503_QEM_TEST"),
    ("Cycle Type", "Quarterly"),
]

MODEL_PROFILES = [
    "DLM USHU_Full (85% SS) v23",
    "DLM USHU_Leak (9% SS) v23",
    "DLM USEQ v23",
    "HD USWF v2",
]
OUTPUT_PROFILES = ["Modeling_Output_Profile", "Default"]
EVENT_RATES = [
    "RMS 2023 Historical Event Rates",
    "RMS 2023 Stochastic Event Rates",
    "RMS 17.0 NA   Stochastic Event Rates",
    "RMS 2019 Historical Event Rates",
    "RMS Stochastic Event Rates",
]

# Jobs of one unit, by batch type.
UNIT_JOB_COUNTS: dict[str, int] = {
    "Data Extraction": 3,
    "EDM Creation": 2,
    "Portfolio Creation": 3,
    "MRI Import": 3,
    "Create Reinsurance Treaties": 3,
    "EDM DB Upgrade": 2,
    "GeoHaz": 3,
    "Portfolio Mapping": 3,
    "Analysis": 6,
    "Grouping": 3,
    "Grouping Rollup": 1,
    "Export to RDM": 10,
}
UNIT_DATA_ROWS = 35  # data rows one unit adds (Reference Data and Metadata are fixed)
FIXED_DATA_ROWS = len(METADATA) + max(len(MODEL_PROFILES), len(OUTPUT_PROFILES), len(EVENT_RATES))


def expected_job_counts(scale: int = 1) -> dict[str, int]:
    return {name: count * scale for name, count in UNIT_JOB_COUNTS.items()}


def scale_for_rows(data_rows: int) -> int:
    """Smallest scale whose workbook has at least ``data_rows`` data rows."""
    return max(1, math.ceil((data_rows - FIXED_DATA_ROWS) / UNIT_DATA_ROWS))


def data_row_count(scale: int) -> int:
    return FIXED_DATA_ROWS + UNIT_DATA_ROWS * scale


@dataclass
class WorkbookSpec:
    """Sheets as lists of rows (header first, except on Metadata); edit, then ``write``.

    Rows and columns are addressed as in Excel: ``row`` is the 1-based Excel row, ``column``
    a header name (or a column letter, which the headerless Metadata sheet needs). Editing
    methods return ``self`` so fault copies read as one expression.
    """

    sheets: dict[str, list[list[Any]]]
    extra_sheets: dict[str, list[list[Any]]] = field(default_factory=dict)

    def copy(self) -> WorkbookSpec:
        return copy.deepcopy(self)

    # ------------------------------------------------------------- addressing

    def column_index(self, sheet: str, column: str) -> int:
        rows = self.sheets[sheet]
        if sheet != METADATA_SHEET and rows and column in rows[0]:
            return rows[0].index(column)
        if column.isalpha() and column.isupper() and len(column) <= 3:
            return column_index_from_string(column) - 1
        raise KeyError(f"{sheet!r} has no column {column!r}")

    def row_of(self, sheet: str, column: str, value: Any) -> int:
        """Excel row of the first row whose ``column`` equals ``value``."""
        index = self.column_index(sheet, column)
        for offset, row in enumerate(self.sheets[sheet]):
            if index < len(row) and row[index] == value:
                return offset + 1
        raise KeyError(f"{sheet!r} has no row with {column} = {value!r}")

    def metadata_row(self, key: str) -> int:
        return self.row_of(METADATA_SHEET, "A", key)

    # ------------------------------------------------------------- edits

    def set(self, sheet: str, row: int, column: str, value: Any) -> WorkbookSpec:
        index = self.column_index(sheet, column)
        rows = self.sheets[sheet]
        while len(rows) < row:
            rows.append([])
        cells = rows[row - 1]
        cells.extend([None] * (index + 1 - len(cells)))
        cells[index] = value
        return self

    def set_metadata(self, key: str, value: Any) -> WorkbookSpec:
        return self.set(METADATA_SHEET, self.metadata_row(key), "B", value)

    def delete_row(self, sheet: str, row: int) -> WorkbookSpec:
        """Remove the row; the rows below move up, as in Excel."""
        del self.sheets[sheet][row - 1]
        return self

    def delete_metadata(self, key: str) -> WorkbookSpec:
        return self.delete_row(METADATA_SHEET, self.metadata_row(key))

    def add_row(self, sheet: str, values: dict[str, Any] | Sequence[Any]) -> int:
        """Append a data row (by header names or in column order); returns its Excel row."""
        if isinstance(values, dict):
            row: list[Any] = []
            self.sheets[sheet].append(row)
            excel_row = len(self.sheets[sheet])
            for column, value in values.items():
                self.set(sheet, excel_row, column, value)
            return excel_row
        self.sheets[sheet].append(list(values))
        return len(self.sheets[sheet])

    def insert_row(self, sheet: str, row: int, values: Sequence[Any] = ()) -> WorkbookSpec:
        """Insert a row before Excel row ``row`` (an empty one by default)."""
        self.sheets[sheet].insert(row - 1, list(values))
        return self

    def replace_everywhere(self, old: Any, new: Any) -> WorkbookSpec:
        """Rename a value in every cell of every sheet, keeping references consistent."""
        for rows in self.sheets.values():
            for cells in rows:
                for index, value in enumerate(cells):
                    if value == old:
                        cells[index] = new
        return self

    def remove_sheet(self, sheet: str) -> WorkbookSpec:
        del self.sheets[sheet]
        return self

    def remove_column(self, sheet: str, column: str) -> WorkbookSpec:
        index = self.column_index(sheet, column)
        for row in self.sheets[sheet]:
            if index < len(row):
                del row[index]
        return self

    def rename_sheet(self, sheet: str, new_name: str) -> WorkbookSpec:
        self.sheets = {
            (new_name if name == sheet else name): rows for name, rows in self.sheets.items()
        }
        return self

    # ------------------------------------------------------------- output

    def write(self, path: str | Path) -> Path:
        """Write like Excel does (shared strings, sheet dimensions), not openpyxl's
        write-only mode: its inline strings and missing dimensions make reading slower
        than for a real workbook, which would skew the benchmark."""
        path = Path(path)
        workbook = openpyxl.Workbook()
        workbook.remove(workbook.active)
        for name, rows in [*self.sheets.items(), *self.extra_sheets.items()]:
            sheet = workbook.create_sheet(name)
            for row in rows:
                sheet.append(row)
        workbook.save(path)
        return path


def _treaty(
    name: str, number: str, kind: str, limit: int, occurrence: int, attachment: int, place: int
) -> list[Any]:
    return [
        name,
        number,
        kind,
        limit,
        occurrence,
        attachment,
        datetime(2000, 1, 1),
        datetime(2030, 12, 31),
        "US Dollar",
        "Losses Occurring",
        "Location",
        100,
        place,
        100,
        100,
        0,
        99,
        0,
        0,
        0,
        1,
        None,
        None,
    ]


def _analysis(
    db: str,
    portfolio: str,
    name: str,
    profile: str,
    rate: str | None,
    treaties: Iterable[str],
    tag: str,
) -> list[Any]:
    slots = list(treaties) + [None] * 5
    return [
        db,
        portfolio,
        name,
        profile,
        "Modeling_Output_Profile",
        rate,
        *slots[:5],
        tag,
        None,
        None,
        None,
        None,
    ]


def valid_workbook(scale: int = 1) -> WorkbookSpec:
    """A valid workbook of ``scale`` units; see the module docstring for the layout."""
    sheets: dict[str, list[list[Any]]] = {METADATA_SHEET: [[key, value] for key, value in METADATA]}
    for name, header in SHEET_HEADERS.items():
        sheets[name] = [list(header)]

    for unit in range(scale):
        t = "" if unit == 0 else f"_{unit}"
        hu, eq = f"RM_EDM_202503_Quarterly_USHU{t}", f"RM_EDM_202503_Quarterly_USEQ{t}"
        full, leak, other, useq, condo = (
            f"USHU_Full{t}",
            f"USHU_Leak{t}",
            f"USHU_Full_Other{t}",
            f"USEQ{t}",
            f"USEQ_Condo{t}",
        )
        xpr, qs = f"XPR_1_95{t}", f"QS_75{t}"
        sheets["Databases"] += [[hu, "Y"], [eq, "N"]]
        sheets["Portfolios"] += [
            [full, hu, full, "Y"],
            [leak, hu, leak, "Y"],
            [other, hu, full, "N"],
            [useq, eq, useq, "Y"],
            [condo, eq, useq, "N"],
        ]
        sheets["Reinsurance Treaties"] += [
            _treaty(xpr, f"TN-{unit}-1", "Working Excess", 3_000_000, 9_000_000, 2_000_000, 95),
            _treaty(qs, f"TN-{unit}-2", "Quota Share", 3_000_000, 169_835_616, 0, 75),
        ]
        for import_file in (full, leak, useq):
            sheets["GeoHaz Thresholds"] += [
                ["Coordinate", import_file, 95, 3],
                ["Street address", import_file, 2.5, 1],
                ["Postcode", import_file, 2.5, 0.5],
            ]
        full_lt, full_nt, other_lt, leak_lt = (
            f"{full}_LT",
            f"{full}_NT",
            f"{other}_LT",
            f"{leak}_LT",
        )
        historical, stochastic = (
            "RMS 2023 Historical Event Rates",
            "RMS 2023 Stochastic Event Rates",
        )
        sheets["Analysis Table"] += [
            _analysis(
                hu,
                full,
                full_lt,
                MODEL_PROFILES[0],
                historical,
                [xpr, qs],
                "202503_Quarterly_USHU_LT",
            ),
            _analysis(
                hu, full, full_nt, MODEL_PROFILES[0], stochastic, [xpr], "202503_Quarterly_USHU_NT"
            ),
            _analysis(
                hu, other, other_lt, MODEL_PROFILES[0], historical, [], "202503_Quarterly_USHU_LT"
            ),
            _analysis(
                hu, leak, leak_lt, MODEL_PROFILES[1], historical, [qs], "202503_Quarterly_USHU_LT"
            ),
            _analysis(
                eq, useq, useq, MODEL_PROFILES[2], EVENT_RATES[2], [xpr], "202503_Quarterly_USEQ"
            ),
            _analysis(eq, condo, condo, MODEL_PROFILES[3], None, [], "202503_Quarterly_USEQ"),
        ]
        lt_group, eq_group = f"202503_USHU_LT_Group{t}", f"202503_USEQ_Group{t}"
        sheets["Groupings"] += [
            [lt_group, full_lt, other_lt, leak_lt],
            [eq_group, useq, condo],
            [f"202503_USHU_Portfolios_Group{t}", full, leak],
            [f"202503_Empty_Group{t}"],
            [f"202503_All_Group{t}", lt_group, eq_group, full_nt],
        ]
        sheets["Products and Perils"] += [
            [full_lt, f"Standard USHU{t}", "Other"],
            [leak_lt, f"Standard USHU{t}", "Renters"],
            [f"202503_All_Group{t}", None, None],
            [useq, f"USEQ{t}", "Condominium"],
        ]
        sheets["ExposureGroup <-> Portname"] += [
            [f"USHU_Hurricane_Full{t}", f"USHU{t}"],
            [f"USEQ_Quake{t}", f"USEQ{t}"],
        ]
    sheets["Moody's Reference Data"] += [
        list(row) for row in zip_longest(MODEL_PROFILES, OUTPUT_PROFILES, EVENT_RATES)
    ]
    extra = {
        "Validations": [["Case", "Count of Failures"], ["Analysis names end with LT or NT", 0]]
    }
    return WorkbookSpec(sheets=sheets, extra_sheets=extra)


def write_valid_workbook(path: str | Path, scale: int = 1) -> Path:
    return valid_workbook(scale).write(path)
