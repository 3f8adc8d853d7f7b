"""Parse and validate the Excel master configuration of a risk-modeling cycle.

Analysts prepare one workbook per cycle by hand, so the parser's first job is to tell them,
in one pass, everything that is wrong and exactly where: every issue carries the sheet, the
Excel row number as Excel shows it, the column header (column letter on the headerless
Metadata sheet), a stable code and a plain-English message naming the offending value. A
workbook with any issue yields no configuration at all: half a cycle is worse than none,
because later batch types depend on earlier ones.

Parsing is pure with respect to the project: it reads the file and nothing else (no store,
no network, no Dagster). openpyxl in read-only mode is used directly rather than pandas:
it keeps Excel's cell types (text vs number vs date), which the rules depend on, and it is
faster (fixture workbook: ~0.15 s openpyxl read-only vs ~0.22 s pandas.read_excel, which
uses openpyxl underneath and then converts types we would have to undo).

Cell values are kept verbatim (no trimming) because names are sent to Moody's as written
and the reference data legitimately contains names with trailing or repeated spaces; a
cell holding only spaces counts as empty. Header names and sheet names are matched
ignoring case and surrounding/repeated whitespace.

Issue codes (stable; see ``ISSUE_CODES`` for the one-line meaning of each):

FILE_NOT_FOUND, UNREADABLE_FILE, NOT_XLSX, EMPTY_WORKBOOK, MISSING_SHEET, EMPTY_SHEET,
MISSING_COLUMN, MISSING_KEY, NO_ROWS, REQUIRED, WRONG_TYPE, CELL_ERROR, PATTERN,
INVALID_CHOICE, OUT_OF_RANGE, DATE_ORDER, DUPLICATE, UNKNOWN_REFERENCE, DATABASE_MISMATCH,
NO_BASE_PORTFOLIO, FORWARD_GROUP_REFERENCE, EMPTY_GROUP_REFERENCE, UNSAFE_NAME,
FORMULA_WITHOUT_VALUE.

Values that become folder, file or partition names (Cycle Type, database and RDM names,
import files) must also be safe names (``core.names``): a Cycle Type of ``../../outside``
would otherwise make Data Extraction write outside the data folder. Values echoed in
messages are shortened (``core.errors.shorten``): a 32 KB cell is not repeated whole.
"""

from __future__ import annotations

import io
import math
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import openpyxl
from pydantic import BaseModel, ConfigDict

from batch_pipelines.core.errors import ConfigurationError, shorten
from batch_pipelines.core.names import MAX_NAME_LENGTH, name_problem
from batch_pipelines.risk_modeling.models import (
    Analysis,
    Database,
    ExposureGroup,
    GeoHazThreshold,
    Grouping,
    GroupItem,
    MasterConfiguration,
    Metadata,
    Portfolio,
    ProductPeril,
    ReferenceData,
    Treaty,
)

__all__ = [
    "ISSUE_CODES",
    "SHEET_ORDER",
    "MasterConfiguration",
    "WorkbookInvalid",
    "WorkbookIssue",
    "WorkbookValidation",
    "load_workbook_configuration",
    "parse_workbook",
    "validate_workbook",
]

# --------------------------------------------------------------------------- format

METADATA = "Metadata"
DATABASES = "Databases"
PORTFOLIOS = "Portfolios"
TREATIES = "Reinsurance Treaties"
GEOHAZ = "GeoHaz Thresholds"
ANALYSIS_TABLE = "Analysis Table"
GROUPINGS = "Groupings"
PRODUCTS_AND_PERILS = "Products and Perils"
REFERENCE_DATA = "Moody's Reference Data"
EXPOSURE_GROUPS = "ExposureGroup <-> Portname"

SHEET_ORDER: tuple[str, ...] = (
    METADATA,
    DATABASES,
    PORTFOLIOS,
    TREATIES,
    GEOHAZ,
    ANALYSIS_TABLE,
    GROUPINGS,
    PRODUCTS_AND_PERILS,
    REFERENCE_DATA,
    EXPOSURE_GROUPS,
)

# Metadata key (column A) -> Metadata field.
METADATA_KEYS: dict[str, str] = {
    "Current Date Value": "current_date_value",
    "EDM Data Version": "edm_data_version",
    "Geocode Version": "geocode_version",
    "Hazard Version": "hazard_version",
    "DLM Model Version": "dlm_model_version",
    "Validate DLM Model Versions?": "validate_dlm_model_versions",
    "Wildfire HD Model Version": "wildfire_hd_model_version",
    "SCS HD Model Version": "scs_hd_model_version",
    "Inland Flood HD Model Version": "inland_flood_hd_model_version",
    "Validate HD Model Versions?": "validate_hd_model_versions",
    "Export RDM Name": "export_rdm_name",
    "Cycle Type": "cycle_type",
}

TREATY_AMOUNT_COLUMNS = (
    "Per-Risk Limit",
    "Occurrence Limit",
    "Attachment Point",
)
TREATY_PERCENT_COLUMNS = ("% Covered", "% Place", "% Share", "% Retention")
TREATY_TYPES = ("Working Excess", "Quota Share")
TREATY_COLUMNS: tuple[str, ...] = (
    "Treaty Name",
    "Treaty Number",
    "Type",
    *TREATY_AMOUNT_COLUMNS,
    "Inception Date",
    "Expiration Date",
    "Currency",
    "Attachment Basis",
    "Exposure Level",
    *TREATY_PERCENT_COLUMNS,
    "Premium",
    "Reinstatements",
    "% Reinstatement Charge",
    "Aggregate Limit",
    "Aggregate Deductible Amount",
    "Inuring Priority",
)
TREATY_OPTIONAL_COLUMNS = ("Producer", "Tags")
TREATY_SLOTS = 5
TAG_SLOTS = 5
GROUP_ITEM_SLOTS = 50

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    DATABASES: ("Database", "Store in Data Bridge?"),
    PORTFOLIOS: ("Portfolio", "Database", "Import File", "Base Portfolio?"),
    TREATIES: TREATY_COLUMNS,
    GEOHAZ: ("Geocode Level", "Import File", "% of Grand Total", "Threshold %"),
    ANALYSIS_TABLE: (
        "Database",
        "Portfolio",
        "Analysis Name",
        "Analysis Profile",
        "Output Profile",
        "Event Rate",
        *(f"Reinsurance Treaty {i}" for i in range(1, TREATY_SLOTS + 1)),
        *(f"Tag {i}" for i in range(1, TAG_SLOTS + 1)),
    ),
    GROUPINGS: ("Group_Name", *(f"Item{i}" for i in range(1, GROUP_ITEM_SLOTS + 1))),
    PRODUCTS_AND_PERILS: ("Analysis Name", "Peril", "Product Group"),
    REFERENCE_DATA: ("Model Profiles", "Output Profiles", "Event Rate Schemes"),
    EXPOSURE_GROUPS: ("ExposureGroup", "Portname"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {TREATIES: TREATY_OPTIONAL_COLUMNS}

DATABASE_PATTERN = re.compile(r"^(RM_|RMS_|TEST_)EDM_\d{6}_.+$")
CURRENT_DATE_PATTERN = re.compile(r"^\d{4}(0[1-9]|1[0-2])$")
VERSION_PATTERN = re.compile(r"^\d+(\.\d+){0,3}$")
_ITEM_HEADER = re.compile(r"^item\s*(\d+)$")

ISSUE_CODES: dict[str, str] = {
    "FILE_NOT_FOUND": "The path does not exist.",
    "UNREADABLE_FILE": "The file exists but cannot be read (permissions, I/O error).",
    "NOT_XLSX": "The file is not an .xlsx workbook (text, .xls, corrupt zip, directory...).",
    "EMPTY_WORKBOOK": "The workbook has no content at all.",
    "MISSING_SHEET": "A required sheet is absent.",
    "EMPTY_SHEET": "A required sheet is present but has no content (not even headers).",
    "MISSING_COLUMN": "A required column header is absent from row 1 of its sheet.",
    "MISSING_KEY": "A required Metadata key is absent from column A.",
    "NO_ROWS": "The Databases sheet has headers but no database.",
    "REQUIRED": "A required cell is empty.",
    "WRONG_TYPE": "A cell holds the wrong kind of value (text for a number, a number for a date...).",
    "CELL_ERROR": "A cell holds an Excel error such as #N/A or #REF!.",
    "PATTERN": "A text cell does not have the required shape (EDM name, YYYYMM, version).",
    "INVALID_CHOICE": "A cell is not one of its allowed values (Y/N, treaty type).",
    "OUT_OF_RANGE": "A number is outside its allowed range (percentages 0-100, amounts >= 0).",
    "DATE_ORDER": "A treaty's expiration date is not after its inception date.",
    "DUPLICATE": "A value that must be unique appears again.",
    "UNKNOWN_REFERENCE": "A cell names something not defined where it must be.",
    "DATABASE_MISMATCH": "An analysis names a portfolio that belongs to another database.",
    "NO_BASE_PORTFOLIO": "A database has no base portfolio.",
    "FORWARD_GROUP_REFERENCE": "A group names itself or a group defined in a later row.",
    "EMPTY_GROUP_REFERENCE": "A group names a group that has no items (and is never created).",
    "UNSAFE_NAME": "A value that becomes a folder, file or partition name is not a safe name "
    "(letters, digits, spaces, '_', '-', '.'; no '/' or '..').",
    "FORMULA_WITHOUT_VALUE": "A cell holds a formula whose result was never saved (the file "
    "was not last saved by Excel), so there is no value to read.",
}

# "YYYYMM_" before the Cycle Type in the cycle's name (see cycle_batches.cycle_name_of).
CYCLE_PREFIX_LENGTH = len("202503_")

_EXCEL_ERRORS = frozenset(
    {
        "#NULL!",
        "#DIV/0!",
        "#VALUE!",
        "#REF!",
        "#NAME?",
        "#NUM!",
        "#N/A",
        "#GETTING_DATA",
        "#SPILL!",
        "#CALC!",
    }
)


# --------------------------------------------------------------------------- results


class WorkbookIssue(BaseModel):
    """One problem in a workbook, pinned to where the analyst must look."""

    model_config = ConfigDict(frozen=True)

    sheet: str | None = None
    row: int | None = None
    column: str | None = None
    code: str
    message: str

    @property
    def location(self) -> str:
        text = self.sheet or ""
        if self.row is not None:
            text += f"!{self.row}"
        if self.column is not None:
            text = f"{text} {self.column}" if text else self.column
        return text

    def __str__(self) -> str:
        location = self.location
        return (
            f"{location}: [{self.code}] {self.message}"
            if location
            else f"[{self.code}] {self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "message": self.message,
        }


class WorkbookValidation(BaseModel):
    """Outcome of validating a workbook; ``job_counts`` is empty unless it is valid."""

    model_config = ConfigDict(frozen=True)

    valid: bool
    issues: list[WorkbookIssue]
    configuration: MasterConfiguration | None = None
    job_counts: dict[str, int]

    def to_json_dict(self) -> dict[str, Any]:
        """The documented ``config validate --json`` shape."""
        return {
            "valid": self.valid,
            "errors": [issue.to_dict() for issue in self.issues],
            "job_counts": dict(self.job_counts),
        }


class WorkbookInvalid(ConfigurationError):
    """The workbook has at least one issue; ``issues`` lists all of them."""

    code = "BP-CONFIG-WORKBOOK"

    def __init__(self, path: str | Path, issues: Sequence[WorkbookIssue]):
        self.path = Path(path)
        self.issues: list[WorkbookIssue] = list(issues)
        count = len(self.issues)
        first = f"; first: {self.issues[0]}" if self.issues else ""
        super().__init__(
            f"workbook {self.path.name} has {count} error{'s' if count != 1 else ''}{first}",
            details={"issues": [issue.to_dict() for issue in self.issues]},
        )


# --------------------------------------------------------------------------- public API


def parse_workbook(path: str | Path) -> tuple[MasterConfiguration | None, list[WorkbookIssue]]:
    """Read the workbook at ``path``: the configuration (None if any issue) and all issues."""
    return _Parser(Path(path)).run()


def load_workbook_configuration(path: str | Path) -> MasterConfiguration:
    """The configuration of a valid workbook; raises ``WorkbookInvalid`` listing every issue."""
    configuration, issues = parse_workbook(path)
    if issues or configuration is None:
        raise WorkbookInvalid(path, issues)
    return configuration


def validate_workbook(path: str | Path) -> WorkbookValidation:
    """Validate without raising, with the job count per batch type when valid."""
    # Imported here: job_configurations depends on the models, not on the parser, and the
    # parser only needs it for this convenience.
    from batch_pipelines.risk_modeling.job_configurations import job_counts

    configuration, issues = parse_workbook(path)
    valid = configuration is not None and not issues
    return WorkbookValidation(
        valid=valid,
        issues=issues,
        configuration=configuration if valid else None,
        job_counts=job_counts(configuration) if valid and configuration is not None else {},
    )


# --------------------------------------------------------------------------- internals


class _Bad:
    """Marker for a value that cannot be used: invalid (issue recorded) or its column is missing."""

    def __repr__(self) -> str:
        return "<bad>"


BAD: Any = _Bad()


def _norm(text: Any) -> str:
    return " ".join(str(text).replace("\u2019", "'").split()).casefold()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {'TRUE' if value else 'FALSE'}"
    if isinstance(value, datetime):
        if value.time() == time(0):
            return f"the date {value.date().isoformat()}"
        return f"the date-time {value.isoformat(sep=' ')}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, time):
        return f"the time {value.isoformat()}"
    if isinstance(value, int | float):
        return f"the number {_number_text(value)}"
    if isinstance(value, str):
        return f"the text {shorten(value)}"
    return repr(value)


class _Formulas:
    """The formulas of the workbook, read only when a cell turns out empty.

    The values are read with ``data_only=True``, which gives a formula's result as Excel
    last saved it, and None when none was saved (a file written by a program rather than
    saved in Excel). Such a cell is not empty: the analyst wrote something there. A second,
    formula-reading pass is made only for a workbook that has formulas at all.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._present: bool | None = None
        self._workbook: Any = None
        self._rows: dict[str, list[tuple[Any, ...]]] = {}

    def _has_formulas(self) -> bool:
        if self._present is None:
            try:
                with zipfile.ZipFile(io.BytesIO(self._data)) as archive:
                    self._present = any(
                        name.startswith("xl/worksheets/")
                        and name.endswith(".xml")
                        and (b"<f>" in (xml := archive.read(name)) or b"<f " in xml)
                        for name in archive.namelist()
                    )
            except (zipfile.BadZipFile, OSError):
                self._present = False
        return self._present

    def at(self, sheet: str, row: int, column: int) -> str | None:
        """The formula in the cell (1-based Excel ``row``, 0-based ``column``), if any."""
        if not self._has_formulas():
            return None
        if sheet not in self._rows:
            if self._workbook is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._workbook = openpyxl.load_workbook(
                        io.BytesIO(self._data), read_only=True, data_only=False, keep_links=False
                    )
            self._rows[sheet] = (
                list(self._workbook[sheet].iter_rows(values_only=True))
                if sheet in self._workbook.sheetnames
                else []
            )
        rows = self._rows[sheet]
        if row > len(rows) or column >= len(rows[row - 1]):
            return None
        value = rows[row - 1][column]
        if isinstance(value, str) and value.startswith("="):
            return value
        text = getattr(value, "text", None)  # array and data-table formulas
        return text if isinstance(text, str) else None

    def close(self) -> None:
        if self._workbook is not None:
            self._workbook.close()


class _Issues:
    """The issues found so far, and the workbook's formulas to explain an empty cell."""

    def __init__(self, formulas: _Formulas | None = None) -> None:
        self.items: list[WorkbookIssue] = []
        self.formulas = formulas

    def add(
        self,
        code: str,
        message: str,
        *,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        assert code in ISSUE_CODES, code
        self.items.append(
            WorkbookIssue(sheet=sheet, row=row, column=column, code=code, message=message)
        )

    def sorted(self, sheet_rank: dict[str, int]) -> list[WorkbookIssue]:
        # Stable: issues of one row keep the column order in which they were found.
        return sorted(
            self.items,
            key=lambda i: (
                -1 if i.sheet is None else sheet_rank.get(i.sheet, len(sheet_rank)),
                0 if i.row is None else i.row,
            ),
        )


@dataclass
class _Cell:
    """Typed access to one row's cells, recording an issue for every bad value."""

    issues: _Issues
    sheet: str
    row: int
    values: tuple[Any, ...]
    columns: dict[str, int]
    # How messages name a column; on the headerless Metadata sheet the column is "B" but the
    # message must name the setting.
    labels: dict[str, str] | None = None
    # The sheet's column index of values[0] (Metadata cells are given column B alone).
    first_column: int = 0

    def label(self, column: str) -> str:
        return self.labels.get(column, column) if self.labels else column

    def raw(self, column: str) -> Any:
        index = self.columns.get(column)
        if index is None:
            return BAD  # the missing column was reported once, at the header
        return self.values[index] if index < len(self.values) else None

    def issue(self, code: str, column: str, message: str) -> Any:
        self.issues.add(code, message, sheet=self.sheet, row=self.row, column=column)
        return BAD

    def _present(self, column: str, required: bool) -> Any:
        value = self.raw(column)
        if value is BAD:
            return BAD
        label = self.label(column)
        if _blank(value):
            formula = self._formula(column) if value is None else None
            if formula is not None:
                return self.issue(
                    "FORMULA_WITHOUT_VALUE",
                    column,
                    f"{label} holds the formula {shorten(formula)} but no saved result (the "
                    "file was not last saved by Excel): open and save it in Excel, or type the value",
                )
            return (
                self.issue("REQUIRED", column, f"{label} is required but the cell is empty")
                if required
                else None
            )
        if isinstance(value, str) and value.strip() in _EXCEL_ERRORS:
            return self.issue(
                "CELL_ERROR", column, f"{label} holds the Excel error {value.strip()}"
            )
        return value

    def _formula(self, column: str) -> str | None:
        formulas = self.issues.formulas
        index = self.columns.get(column)
        if formulas is None or index is None:
            return None
        return formulas.at(self.sheet, self.row, self.first_column + index)

    def safe_name(self, column: str, value: Any, *, max_length: int = MAX_NAME_LENGTH) -> Any:
        """``value`` when it can become a folder, file or partition name, else an issue."""
        if value is BAD or value is None:
            return value
        problem = name_problem(value)
        if problem is None and len(value) > max_length:
            problem = f"is {len(value)} characters long; at most {max_length} fit here"
        if problem is not None:
            return self.issue(
                "UNSAFE_NAME",
                column,
                f"{self.label(column)} {shorten(value)} becomes part of folder and file names "
                f"and {problem}",
            )
        return value

    def text(self, column: str, *, required: bool = True, numbers: bool = True) -> Any:
        """Text as written. Numbers become text unless ``numbers`` is False: Excel turns a
        typed 2024 or 12345 into a number, which for a name or an id is still meant as text."""
        value = self._present(column, required)
        if value is None or value is BAD or isinstance(value, str):
            return value
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return _number_text(value)
        return self.issue(
            "WRONG_TYPE", column, f"{self.label(column)} must be text, found {_describe(value)}"
        )

    def number(
        self,
        column: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
        required: bool = True,
    ) -> Any:
        value = self._present(column, required)
        if value is None or value is BAD:
            return value
        label = self.label(column)
        kind = "a whole number" if integer else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return self.issue(
                "WRONG_TYPE", column, f"{label} must be {kind}, found {_describe(value)}"
            )
        if integer:
            if not float(value).is_integer():
                return self.issue(
                    "WRONG_TYPE", column, f"{label} must be {kind}, found {_describe(value)}"
                )
            value = int(value)
        too_low = minimum is not None and value < minimum
        too_high = maximum is not None and value > maximum
        if too_low or too_high:
            if minimum is not None and maximum is not None:
                bounds = f"between {_number_text(minimum)} and {_number_text(maximum)}"
            elif minimum is not None:
                bounds = f"at least {_number_text(minimum)}"
            else:
                bounds = f"at most {_number_text(maximum)}"  # type: ignore[arg-type]
            return self.issue(
                "OUT_OF_RANGE", column, f"{label} must be {bounds}, found {_number_text(value)}"
            )
        return value

    def yes_no(self, column: str) -> Any:
        value = self._present(column, True)
        if value is BAD:
            return BAD
        label = self.label(column)
        if not isinstance(value, str):
            return self.issue(
                "WRONG_TYPE", column, f"{label} must be Y or N, found {_describe(value)}"
            )
        flag = value.strip().upper()
        if flag not in ("Y", "N"):
            return self.issue(
                "INVALID_CHOICE", column, f"{label} must be Y or N, found {shorten(value)}"
            )
        return flag == "Y"

    def choice(self, column: str, options: Sequence[str]) -> Any:
        value = self._present(column, True)
        if value is BAD:
            return BAD
        label = self.label(column)
        allowed = " or ".join(repr(o) for o in options)
        if not isinstance(value, str):
            return self.issue(
                "WRONG_TYPE", column, f"{label} must be {allowed}, found {_describe(value)}"
            )
        for option in options:
            if _norm(option) == _norm(value):
                return option
        return self.issue(
            "INVALID_CHOICE", column, f"{label} must be {allowed}, found {shorten(value)}"
        )

    def date(self, column: str) -> Any:
        value = self._present(column, True)
        if value is BAD:
            return BAD
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip()).date()
            except ValueError:
                pass
        return self.issue(
            "WRONG_TYPE", column, f"{self.label(column)} must be a date, found {_describe(value)}"
        )


@dataclass
class _Table:
    """A header-row sheet: row 1 holds the headers, data starts on row 2."""

    sheet: str  # the sheet's title as it appears in the workbook
    columns: dict[str, int]  # spec header -> 0-based index (present columns only)
    extra: dict[str, int]  # every other header (normalized) -> index
    rows: list[tuple[Any, ...]] = field(repr=False, default_factory=list)

    def iter_rows(self, issues: _Issues) -> Iterator[_Cell]:
        indices = sorted(set(self.columns.values()))
        for offset, values in enumerate(self.rows[1:]):
            if all(_blank(values[i]) for i in indices if i < len(values)):
                continue  # blank rows are layout, not data
            yield _Cell(issues, self.sheet, offset + 2, values, self.columns)

    def has(self, *columns: str) -> bool:
        return all(c in self.columns for c in columns)


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.issues = _Issues()
        self.sheet_rank: dict[str, int] = {name: i for i, name in enumerate(SHEET_ORDER)}

    # ---------------------------------------------------------------- file

    def run(self) -> tuple[MasterConfiguration | None, list[WorkbookIssue]]:
        workbook = self._open()
        if workbook is None:
            return None, self.issues.sorted(self.sheet_rank)
        try:
            with warnings.catch_warnings():
                # openpyxl warns about features it ignores (data validation, conditional
                # formatting extensions); they do not matter for reading values.
                warnings.simplefilter("ignore")
                configuration = self._parse(workbook)
        finally:
            workbook.close()
            if self.issues.formulas is not None:
                self.issues.formulas.close()
        issues = self.issues.sorted(self.sheet_rank)
        return (configuration if not issues else None), issues

    def _open(self) -> Any:
        path = self.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.issues.add("FILE_NOT_FOUND", f"the file {str(path)!r} does not exist")
            return None
        except IsADirectoryError:
            self.issues.add("NOT_XLSX", f"{str(path)!r} is a directory, not an .xlsx workbook")
            return None
        except OSError as exc:
            self.issues.add(
                "UNREADABLE_FILE", f"the file {str(path)!r} cannot be read: {exc.strerror or exc}"
            )
            return None
        if not data:
            self.issues.add("NOT_XLSX", f"{path.name!r} is empty (0 bytes), not an .xlsx workbook")
            return None
        if data.startswith(b"\xd0\xcf\x11\xe0"):
            self.issues.add(
                "NOT_XLSX",
                f"{path.name!r} is an Excel 97-2003 (.xls) or password-protected workbook, "
                "not an .xlsx workbook: save it as an unprotected Excel Workbook (.xlsx)",
            )
            return None
        if not data.startswith(b"PK"):
            self.issues.add(
                "NOT_XLSX",
                f"{path.name!r} is not an .xlsx workbook (an .xlsx file is a zip archive; "
                "this looks like text or another format such as CSV)",
            )
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = openpyxl.load_workbook(
                    io.BytesIO(data), read_only=True, data_only=True, keep_links=False
                )
            self.issues.formulas = _Formulas(data)
            return workbook
        except Exception as exc:  # openpyxl raises many types for malformed archives
            self.issues.add(
                "NOT_XLSX",
                f"{path.name!r} is a zip archive but not a readable .xlsx workbook: "
                f"{type(exc).__name__}: {exc}",
            )
            return None

    # ---------------------------------------------------------------- sheets

    def _parse(self, workbook: Any) -> MasterConfiguration | None:
        by_name = {_norm(ws.title): ws for ws in workbook.worksheets}
        raw: dict[str, tuple[str, list[tuple[Any, ...]]] | None] = {}
        for spec in SHEET_ORDER:
            ws = by_name.get(_norm(spec))
            raw[spec] = None if ws is None else (ws.title, list(ws.iter_rows(values_only=True)))

        def has_content(rows: list[tuple[Any, ...]]) -> bool:
            return any(not _blank(v) for row in rows for v in row)

        present = {spec: v for spec, v in raw.items() if v is not None}
        if not any(has_content(rows) for _, rows in present.values()):
            expected = set(map(_norm, SHEET_ORDER))
            others = [ws for ws in workbook.worksheets if _norm(ws.title) not in expected]
            if not any(has_content(list(ws.iter_rows(values_only=True))) for ws in others):
                self.issues.add(
                    "EMPTY_WORKBOOK",
                    f"{self.path.name!r} is an empty workbook: none of its sheets holds a "
                    f"single value (expected the sheets {', '.join(SHEET_ORDER)})",
                )
                return None

        # Issues name the sheet as the workbook spells it.
        for spec, value in raw.items():
            if value is not None and value[0] != spec:
                self.sheet_rank[value[0]] = self.sheet_rank[spec]

        tables: dict[str, _Table | None] = {}
        metadata_rows: tuple[str, list[tuple[Any, ...]]] | None = None
        for spec, value in raw.items():
            if value is None:
                self.issues.add(
                    "MISSING_SHEET", f"the sheet {shorten(spec)} is missing", sheet=spec
                )
                tables[spec] = None
                continue
            title, rows = value
            if not has_content(rows):
                self.issues.add("EMPTY_SHEET", f"the sheet {shorten(title)} is empty", sheet=title)
                tables[spec] = None
                continue
            if spec == METADATA:
                metadata_rows = value
            else:
                tables[spec] = self._table(spec, title, rows)

        return _Sheets(self.issues, tables, metadata_rows).build()

    def _table(self, spec: str, title: str, rows: list[tuple[Any, ...]]) -> _Table:
        header = rows[0] if rows else ()
        found: dict[str, int] = {}
        for index, value in enumerate(header):
            if not _blank(value):
                found.setdefault(_norm(value), index)
        columns: dict[str, int] = {}
        for column in (*REQUIRED_COLUMNS[spec], *OPTIONAL_COLUMNS.get(spec, ())):
            index = found.pop(_norm(column), None)
            if index is not None:
                columns[column] = index
            elif column in REQUIRED_COLUMNS[spec]:
                self.issues.add(
                    "MISSING_COLUMN",
                    f"the sheet {shorten(title)} has no {shorten(column)} column in row 1",
                    sheet=title,
                    row=1,
                    column=column,
                )
        return _Table(sheet=title, columns=columns, extra=found, rows=rows)


class _Sheets:
    """Row-level and cross-sheet rules, with the sheets already located."""

    def __init__(
        self,
        issues: _Issues,
        tables: dict[str, _Table | None],
        metadata: tuple[str, list[tuple[Any, ...]]] | None,
    ):
        self.issues = issues
        self.tables = tables
        self.metadata_raw = metadata
        # Name indexes used by cross-sheet rules. ``None`` means "unknown because the sheet
        # or the column is missing": reference checks against it are skipped, so one missing
        # sheet is one issue rather than hundreds.
        self.model_profiles: set[str] | None = None
        self.output_profiles: set[str] | None = None
        self.event_rates: set[str] | None = None
        self.database_rows: dict[str, int] | None = None
        self.portfolio_by_name: dict[str, tuple[int, Any]] | None = None  # name -> (row, database)
        self.import_files: set[str] | None = None
        # Databases with a base portfolio, and those whose base flag could not be read.
        self.databases_with_base: set[str] | None = None
        self.databases_unsure: set[str] = set()
        self.treaty_rows: dict[str, int] | None = None
        self.analysis_rows: dict[str, int] | None = None
        self.group_rows: dict[str, int] | None = None

    def build(self) -> MasterConfiguration | None:
        metadata = self._metadata()
        reference = self._reference_data()
        databases = self._databases()
        portfolios = self._portfolios()
        self._check_base_portfolios()
        treaties = self._treaties()
        geohaz = self._geohaz()
        analyses = self._analyses()
        groupings = self._groupings()
        products = self._products_and_perils()
        exposure = self._exposure_groups()
        if self.issues.items:
            return None
        return MasterConfiguration(
            metadata=metadata,
            databases=databases,
            portfolios=portfolios,
            treaties=treaties,
            geohaz_thresholds=geohaz,
            analyses=analyses,
            groupings=groupings,
            products_and_perils=products,
            reference_data=reference,
            exposure_groups=exposure,
        )

    # ---------------------------------------------------------------- Metadata

    def _metadata(self) -> Any:
        if self.metadata_raw is None:
            return None
        title, rows = self.metadata_raw
        wanted = {_norm(key): key for key in METADATA_KEYS}
        found: dict[str, tuple[int, Any]] = {}
        for offset, row in enumerate(rows):
            if not row or _blank(row[0]):
                continue
            key = wanted.get(_norm(row[0]))
            if key is None:
                continue  # other keys are notes for humans
            if key in found:
                self.issues.add(
                    "DUPLICATE",
                    f"the key {shorten(key)} appears again (first in row {found[key][0]})",
                    sheet=title,
                    row=offset + 1,
                    column="A",
                )
                continue
            found[key] = (offset + 1, row[1] if len(row) > 1 else None)

        values: dict[str, Any] = {}
        for key, field_name in METADATA_KEYS.items():
            if key not in found:
                self.issues.add(
                    "MISSING_KEY",
                    f"the key {shorten(key)} is missing from column A",
                    sheet=title,
                    column="A",
                )
                values[field_name] = BAD
                continue
            excel_row, value = found[key]
            cell = _Cell(
                self.issues, title, excel_row, (value,), {"B": 0}, labels={"B": key}, first_column=1
            )
            values[field_name] = self._metadata_value(key, cell)
        if any(v is BAD for v in values.values()):
            return None
        return Metadata(**values)

    @staticmethod
    def _metadata_value(key: str, cell: _Cell) -> Any:
        if key in ("Validate DLM Model Versions?", "Validate HD Model Versions?"):
            return cell.yes_no("B")
        if key in ("DLM Model Version", "Wildfire HD Model Version", "SCS HD Model Version"):
            return cell.number("B", integer=True)
        if key == "Inland Flood HD Model Version":
            return cell.number("B")
        # Current Date Value and the version strings must be text cells: typed as numbers,
        # Excel would have turned 23.0 into 23 and 202503 into a number formatted at will.
        strict = key in (
            "Current Date Value",
            "EDM Data Version",
            "Geocode Version",
            "Hazard Version",
        )
        value = cell.text("B", numbers=not strict)
        if value is BAD:
            return BAD
        if key == "Current Date Value" and not CURRENT_DATE_PATTERN.match(value):
            return cell.issue(
                "PATTERN",
                "B",
                f"{key} must be a year and month as YYYYMM text such as '202503', found {shorten(value)}",
            )
        if strict and key != "Current Date Value" and not VERSION_PATTERN.match(value):
            return cell.issue(
                "PATTERN",
                "B",
                f"{key} must be a version string such as '23.0.0', found {shorten(value)}",
            )
        if key == "Cycle Type":
            # The cycle ("202503_Quarterly") is a partition key and the folder of its files.
            return cell.safe_name("B", value, max_length=MAX_NAME_LENGTH - CYCLE_PREFIX_LENGTH)
        if key == "Export RDM Name":
            return cell.safe_name("B", value)
        return value

    # ---------------------------------------------------------------- Reference data

    def _reference_data(self) -> Any:
        table = self.tables[REFERENCE_DATA]
        if table is None:
            return None
        lists: dict[str, list[str]] = {}
        for column in REQUIRED_COLUMNS[REFERENCE_DATA]:
            if column not in table.columns:
                continue
            index = table.columns[column]
            values: list[str] = []
            # The three lists are independent: each runs to its own length, and a blank
            # in one does not end the others.
            for offset, row in enumerate(table.rows[1:]):
                if index >= len(row) or _blank(row[index]):
                    continue
                cell = _Cell(self.issues, table.sheet, offset + 2, row, table.columns)
                value = cell.text(column)
                if value is not BAD:
                    values.append(value)
            lists[column] = values
        self.model_profiles = set(lists["Model Profiles"]) if "Model Profiles" in lists else None
        self.output_profiles = set(lists["Output Profiles"]) if "Output Profiles" in lists else None
        self.event_rates = (
            set(lists["Event Rate Schemes"]) if "Event Rate Schemes" in lists else None
        )
        if len(lists) != 3:
            return None
        return ReferenceData(
            model_profiles=tuple(lists["Model Profiles"]),
            output_profiles=tuple(lists["Output Profiles"]),
            event_rate_schemes=tuple(lists["Event Rate Schemes"]),
        )

    # ---------------------------------------------------------------- helpers

    def _unique(
        self, cell: _Cell, column: str, value: Any, seen: dict[str, int], what: str
    ) -> None:
        if value is BAD or value is None:
            return
        if value in seen:
            cell.issue(
                "DUPLICATE",
                column,
                f"{what} {shorten(value)} is already defined in row {seen[value]}",
            )
        else:
            seen[value] = cell.row

    def _known_database(self, cell: _Cell) -> Any:
        database = cell.text("Database")
        if (
            database is not BAD
            and self.database_rows is not None
            and database not in self.database_rows
        ):
            return cell.issue(
                "UNKNOWN_REFERENCE",
                "Database",
                f"Database {shorten(database)} is not listed on the Databases sheet",
            )
        return database

    @staticmethod
    def _all_ok(*values: Any) -> bool:
        return not any(v is BAD for v in values)

    # ---------------------------------------------------------------- Databases

    def _databases(self) -> list[Database]:
        table = self.tables[DATABASES]
        if table is None:
            return []
        seen: dict[str, int] = {}
        result: list[Database] = []
        count = 0
        for cell in table.iter_rows(self.issues):
            count += 1
            name = cell.text("Database")
            if name is not BAD and not DATABASE_PATTERN.match(name):
                cell.issue(
                    "PATTERN",
                    "Database",
                    f"Database {shorten(name)} must look like RM_EDM_YYYYMM_name, RMS_EDM_YYYYMM_name "
                    "or TEST_EDM_YYYYMM_name",
                )
            else:
                # Reported, but kept as the name other sheets refer to (one issue, not many).
                cell.safe_name("Database", name)
            self._unique(cell, "Database", name, seen, "Database")
            flag = cell.yes_no("Store in Data Bridge?")
            if self._all_ok(name, flag):
                result.append(Database(row=cell.row, name=name, store_in_data_bridge=flag))
        if count == 0 and "Database" in table.columns:
            self.issues.add(
                "NO_ROWS",
                "the Databases sheet lists no database",
                sheet=table.sheet,
                row=2,
                column="Database",
            )
        self.database_rows = seen if "Database" in table.columns else None
        return result

    # ---------------------------------------------------------------- Portfolios

    def _portfolios(self) -> list[Portfolio]:
        table = self.tables[PORTFOLIOS]
        if table is None:
            return []
        seen: dict[str, int] = {}
        by_name: dict[str, tuple[int, Any]] = {}
        import_files: set[str] = set()
        with_base: set[str] = set()
        result: list[Portfolio] = []
        for cell in table.iter_rows(self.issues):
            name = cell.text("Portfolio")
            self._unique(cell, "Portfolio", name, seen, "Portfolio")
            database = self._known_database(cell)
            import_file = cell.text("Import File")
            # Data Extraction names its CSV files after the import file.
            cell.safe_name("Import File", import_file)
            is_base = cell.yes_no("Base Portfolio?")
            if name is not BAD and name not in by_name:
                by_name[name] = (cell.row, database)
            if import_file is not BAD:
                import_files.add(import_file)
            if database is not BAD:
                if is_base is True:
                    with_base.add(database)
                elif is_base is BAD:
                    self.databases_unsure.add(database)
            if self._all_ok(name, database, import_file, is_base):
                result.append(
                    Portfolio(
                        row=cell.row,
                        name=name,
                        database=database,
                        import_file=import_file,
                        is_base=is_base,
                    )
                )
        self.portfolio_by_name = by_name if "Portfolio" in table.columns else None
        self.import_files = import_files if "Import File" in table.columns else None
        self.databases_with_base = with_base if table.has("Database", "Base Portfolio?") else None
        return result

    def _check_base_portfolios(self) -> None:
        """Every database needs a base portfolio: Data Extraction, MRI Import and GeoHaz
        work per base portfolio, so a database without one would be created and left empty."""
        table = self.tables[DATABASES]
        if table is None or self.database_rows is None or self.databases_with_base is None:
            return
        for name, row in self.database_rows.items():
            if name not in self.databases_with_base and name not in self.databases_unsure:
                self.issues.add(
                    "NO_BASE_PORTFOLIO",
                    f"Database {shorten(name)} has no base portfolio: mark one of its portfolios "
                    "with Base Portfolio? = Y on the Portfolios sheet",
                    sheet=table.sheet,
                    row=row,
                    column="Database",
                )

    # ---------------------------------------------------------------- Treaties

    def _treaties(self) -> list[Treaty]:
        table = self.tables[TREATIES]
        if table is None:
            return []
        names: dict[str, int] = {}
        numbers: dict[str, int] = {}
        result: list[Treaty] = []
        for cell in table.iter_rows(self.issues):
            name = cell.text("Treaty Name")
            self._unique(cell, "Treaty Name", name, names, "Treaty Name")
            number = cell.text("Treaty Number")
            self._unique(cell, "Treaty Number", number, numbers, "Treaty Number")
            values: dict[str, Any] = {
                "row": cell.row,
                "name": name,
                "number": number,
                "type": cell.choice("Type", TREATY_TYPES),
                "per_risk_limit": cell.number("Per-Risk Limit", minimum=0),
                "occurrence_limit": cell.number("Occurrence Limit", minimum=0),
                "attachment_point": cell.number("Attachment Point", minimum=0),
                "inception_date": cell.date("Inception Date"),
                "expiration_date": cell.date("Expiration Date"),
                "currency": cell.text("Currency"),
                "attachment_basis": cell.text("Attachment Basis"),
                "exposure_level": cell.text("Exposure Level"),
                "percent_covered": cell.number("% Covered", minimum=0, maximum=100),
                "percent_placed": cell.number("% Place", minimum=0, maximum=100),
                "percent_share": cell.number("% Share", minimum=0, maximum=100),
                "percent_retention": cell.number("% Retention", minimum=0, maximum=100),
                "premium": cell.number("Premium", minimum=0),
                "reinstatements": cell.number("Reinstatements", minimum=0, integer=True),
                "percent_reinstatement_charge": cell.number("% Reinstatement Charge", minimum=0),
                "aggregate_limit": cell.number("Aggregate Limit", minimum=0),
                "aggregate_deductible_amount": cell.number(
                    "Aggregate Deductible Amount", minimum=0
                ),
                "inuring_priority": cell.number("Inuring Priority", minimum=0, integer=True),
                "producer": cell.text("Producer", required=False)
                if "Producer" in table.columns
                else None,
                "tags": cell.text("Tags", required=False) if "Tags" in table.columns else None,
            }
            inception, expiration = values["inception_date"], values["expiration_date"]
            if self._all_ok(inception, expiration) and expiration <= inception:
                cell.issue(
                    "DATE_ORDER",
                    "Expiration Date",
                    f"Expiration Date {expiration.isoformat()} must be after Inception Date "
                    f"{inception.isoformat()}",
                )
                values["expiration_date"] = BAD
            if self._all_ok(*values.values()):
                result.append(Treaty(**values))
        self.treaty_rows = names if "Treaty Name" in table.columns else None
        return result

    # ---------------------------------------------------------------- GeoHaz

    def _geohaz(self) -> list[GeoHazThreshold]:
        table = self.tables[GEOHAZ]
        if table is None:
            return []
        result: list[GeoHazThreshold] = []
        for cell in table.iter_rows(self.issues):
            level = cell.text("Geocode Level")
            import_file = cell.text("Import File")
            if (
                import_file is not BAD
                and self.import_files is not None
                and import_file not in self.import_files
            ):
                cell.issue(
                    "UNKNOWN_REFERENCE",
                    "Import File",
                    f"Import File {shorten(import_file)} is not the import file of any portfolio",
                )
            share = cell.number("% of Grand Total", minimum=0, maximum=100)
            threshold = cell.number("Threshold %", minimum=0, maximum=100)
            if self._all_ok(level, import_file, share, threshold):
                result.append(
                    GeoHazThreshold(
                        row=cell.row,
                        geocode_level=level,
                        import_file=import_file,
                        percent_of_grand_total=share,
                        threshold_percent=threshold,
                    )
                )
        return result

    # ---------------------------------------------------------------- Analysis Table

    def _analyses(self) -> list[Analysis]:
        table = self.tables[ANALYSIS_TABLE]
        if table is None:
            return []
        names: dict[str, int] = {}
        result: list[Analysis] = []
        for cell in table.iter_rows(self.issues):
            database = self._known_database(cell)
            portfolio = cell.text("Portfolio")
            if portfolio is not BAD and self.portfolio_by_name is not None:
                known = self.portfolio_by_name.get(portfolio)
                if known is None:
                    cell.issue(
                        "UNKNOWN_REFERENCE",
                        "Portfolio",
                        f"Portfolio {shorten(portfolio)} is not listed on the Portfolios sheet",
                    )
                elif database is not BAD and known[1] is not BAD and known[1] != database:
                    cell.issue(
                        "DATABASE_MISMATCH",
                        "Portfolio",
                        f"Portfolio {shorten(portfolio)} belongs to database {shorten(known[1])} (Portfolios row "
                        f"{known[0]}), not {shorten(database)}",
                    )
            name = cell.text("Analysis Name")
            self._unique(cell, "Analysis Name", name, names, "Analysis Name")
            profile = self._listed(
                cell, "Analysis Profile", self.model_profiles, "Model Profiles", True
            )
            output = self._listed(
                cell, "Output Profile", self.output_profiles, "Output Profiles", True
            )
            event_rate = self._listed(
                cell, "Event Rate", self.event_rates, "Event Rate Schemes", False
            )
            treaties: list[Any] = []
            for i in range(1, TREATY_SLOTS + 1):
                column = f"Reinsurance Treaty {i}"
                treaty = cell.text(column, required=False)
                if treaty is None or treaty is BAD:
                    treaties.append(treaty)
                    continue
                if self.treaty_rows is not None and treaty not in self.treaty_rows:
                    treaty = cell.issue(
                        "UNKNOWN_REFERENCE",
                        column,
                        f"{column} {shorten(treaty)} is not listed on the Reinsurance Treaties sheet",
                    )
                elif treaty in treaties:
                    treaty = cell.issue(
                        "DUPLICATE",
                        column,
                        f"{column} repeats treaty {shorten(treaty)} of this row",
                    )
                treaties.append(treaty)
            tags = [cell.text(f"Tag {i}", required=i == 1) for i in range(1, TAG_SLOTS + 1)]
            if self._all_ok(
                database, portfolio, name, profile, output, event_rate, *treaties, *tags
            ):
                result.append(
                    Analysis(
                        row=cell.row,
                        database=database,
                        portfolio=portfolio,
                        name=name,
                        analysis_profile=profile,
                        output_profile=output,
                        event_rate=event_rate,
                        treaties=tuple(t for t in treaties if t is not None),
                        tags=tuple(t for t in tags if t is not None),
                    )
                )
        self.analysis_rows = names if "Analysis Name" in table.columns else None
        return result

    def _listed(
        self, cell: _Cell, column: str, allowed: set[str] | None, list_name: str, required: bool
    ) -> Any:
        value = cell.text(column, required=required)
        if value is None or value is BAD or allowed is None:
            return value
        if value not in allowed:
            return cell.issue(
                "UNKNOWN_REFERENCE",
                column,
                f"{column} {shorten(value)} is not in the {list_name} list of Moody's Reference Data",
            )
        return value

    # ---------------------------------------------------------------- Groupings

    def _groupings(self) -> list[Grouping]:
        table = self.tables[GROUPINGS]
        if table is None:
            return []
        item_columns = [
            f"Item{i}" for i in range(1, GROUP_ITEM_SLOTS + 1) if f"Item{i}" in table.columns
        ]
        # Tolerate more item columns than the template's fifty.
        for header, index in sorted(table.extra.items(), key=lambda kv: kv[1]):
            match = _ITEM_HEADER.match(header)
            if match and int(match.group(1)) > GROUP_ITEM_SLOTS:
                column = f"Item{int(match.group(1))}"
                table.columns.setdefault(column, index)
                item_columns.append(column)

        # First pass: every group name and its row, to tell a forward reference from an
        # unknown name.
        all_groups: dict[str, int] = {}
        name_index = table.columns.get("Group_Name")
        if name_index is not None:
            for offset, row in enumerate(table.rows[1:]):
                value = row[name_index] if name_index < len(row) else None
                if isinstance(value, int | float) and not isinstance(value, bool):
                    value = _number_text(value)
                if isinstance(value, str) and not _blank(value):
                    all_groups.setdefault(value, offset + 2)

        defined: dict[str, int] = {}
        empty: set[str] = set()
        result: list[Grouping] = []
        for cell in table.iter_rows(self.issues):
            name = cell.text("Group_Name")
            self._unique(cell, "Group_Name", name, defined, "Group_Name")
            if name is not BAD and self.analysis_rows is not None and name in self.analysis_rows:
                cell.issue(
                    "DUPLICATE",
                    "Group_Name",
                    f"Group_Name {shorten(name)} is also the name of the analysis in Analysis Table row "
                    f"{self.analysis_rows[name]}; groups and analyses share one namespace",
                )
                name = BAD
            items: list[Any] = []
            seen_items: dict[str, str] = {}
            for column in item_columns:
                value = cell.text(column, required=False)
                if value is None:
                    continue
                if value is BAD:
                    items.append(BAD)
                    continue
                item = self._group_item(cell, column, value, name, defined, empty, all_groups)
                if item is not BAD:
                    if value in seen_items:
                        item = cell.issue(
                            "DUPLICATE",
                            column,
                            f"{column} repeats {shorten(value)}, already in {seen_items[value]}",
                        )
                    else:
                        seen_items[value] = column
                items.append(item)
            if name is not BAD and not items:
                empty.add(name)
            if self._all_ok(name, *items):
                result.append(Grouping(row=cell.row, name=name, items=tuple(items)))
        self.group_rows = all_groups if name_index is not None else None
        return result

    def _group_item(
        self,
        cell: _Cell,
        column: str,
        value: str,
        group: Any,
        defined: dict[str, int],
        empty: set[str],
        all_groups: dict[str, int],
    ) -> Any:
        if value == group:
            return cell.issue(
                "FORWARD_GROUP_REFERENCE", column, f"{column} {shorten(value)} is the group itself"
            )
        if value in defined and value != group:
            if value in empty:
                return cell.issue(
                    "EMPTY_GROUP_REFERENCE",
                    column,
                    f"{column} {shorten(value)} is a group with no items (row {defined[value]}), which is never created",
                )
            return GroupItem(name=value, kind="group")
        if self.analysis_rows is not None and value in self.analysis_rows:
            return GroupItem(name=value, kind="analysis")
        if self.portfolio_by_name is not None and value in self.portfolio_by_name:
            return GroupItem(name=value, kind="portfolio")
        if value in all_groups:
            return cell.issue(
                "FORWARD_GROUP_REFERENCE",
                column,
                f"{column} {shorten(value)} is a group defined later, in row {all_groups[value]}; "
                "a group may only contain groups from earlier rows",
            )
        if self.analysis_rows is None or self.portfolio_by_name is None:
            return BAD  # cannot tell; the missing sheet or column is already reported
        return cell.issue(
            "UNKNOWN_REFERENCE",
            column,
            f"{column} {shorten(value)} is not a portfolio, an analysis or a group from an earlier row",
        )

    # ---------------------------------------------------------------- Products and Perils

    def _products_and_perils(self) -> list[ProductPeril]:
        table = self.tables[PRODUCTS_AND_PERILS]
        if table is None:
            return []
        pairs: dict[tuple[str, str], int] = {}
        result: list[ProductPeril] = []
        for cell in table.iter_rows(self.issues):
            name = cell.text("Analysis Name")
            if (
                name is not BAD
                and self.analysis_rows is not None
                and self.group_rows is not None
                and name not in self.analysis_rows
                and name not in self.group_rows
            ):
                cell.issue(
                    "UNKNOWN_REFERENCE",
                    "Analysis Name",
                    f"Analysis Name {shorten(name)} is neither an analysis of the Analysis Table nor a group",
                )
                name = BAD
            peril = cell.text("Peril", required=False)
            product = cell.text("Product Group", required=False)
            if isinstance(peril, str) and isinstance(product, str):
                if (peril, product) in pairs:
                    product = cell.issue(
                        "DUPLICATE",
                        "Product Group",
                        f"the pair Peril {shorten(peril)} / Product Group {shorten(product)} is already used in row "
                        f"{pairs[(peril, product)]}",
                    )
                else:
                    pairs[(peril, product)] = cell.row
            if self._all_ok(name, peril, product):
                result.append(
                    ProductPeril(
                        row=cell.row, analysis_name=name, peril=peril, product_group=product
                    )
                )
        return result

    # ---------------------------------------------------------------- ExposureGroup <-> Portname

    def _exposure_groups(self) -> list[ExposureGroup]:
        table = self.tables[EXPOSURE_GROUPS]
        if table is None:
            return []
        groups: dict[str, int] = {}
        portnames: dict[str, int] = {}
        result: list[ExposureGroup] = []
        for cell in table.iter_rows(self.issues):
            group = cell.text("ExposureGroup")
            self._unique(cell, "ExposureGroup", group, groups, "ExposureGroup")
            portname = cell.text("Portname")
            self._unique(cell, "Portname", portname, portnames, "Portname")
            if self._all_ok(group, portname):
                result.append(ExposureGroup(row=cell.row, exposure_group=group, portname=portname))
        return result
