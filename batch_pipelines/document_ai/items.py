"""Batch job items: an input text plus metadata, parsed from records or from a file.

Items are checked all at once before anything is stored: ``ItemsInvalid`` lists every bad
item with its index, where it is in the file (JSONL line, CSV/XLSX row) and why, so a user
fixes a file in one pass. Limits come from seed 002: 1 to ``MAX_ITEMS`` items per job and
1 to ``MAX_CONTENT_CHARS`` characters of content per item (Python characters, i.e. code
points; content holding only whitespace counts as empty).

A record has the shape of ``ItemRecord``: its text under ``content`` or ``text`` (exactly one
of them) and an optional ``metadata`` object. Every other key
is metadata; a nested ``metadata`` object (the seed's ``{content, metadata: {...}}`` shape)
is merged into it. Files: ``.jsonl`` (one JSON object per line, blank lines skipped),
``.csv`` (UTF-8, header row) and ``.xlsx`` (first sheet, header row); tabular files need a
``content`` or ``text`` column, other columns become metadata. Completely empty lines and
rows are skipped; messages always give the real line or row number.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batch_pipelines.core.errors import ConfigurationError

__all__ = [
    "CONTENT_KEYS",
    "MAX_CONTENT_CHARS",
    "MAX_ITEMS",
    "SUPPORTED_EXTENSIONS",
    "Item",
    "ItemError",
    "ItemRecord",
    "ItemsInvalid",
    "load_items",
    "parse_items",
]

MAX_ITEMS = 10_000
MAX_CONTENT_CHARS = 100_000
CONTENT_KEYS = ("content", "text")
SUPPORTED_EXTENSIONS = (".jsonl", ".csv", ".xlsx")
_MESSAGE_LISTING_LIMIT = 50


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ItemRecord(BaseModel):
    """One item as a user gives it - the one schema of items in the launchpad, the API and
    (as the keys of a JSON line or the columns of a row) in files.

    The text goes under ``content`` or ``text`` (exactly one); ``metadata`` is kept with the
    item and its results. In files every other key or column is metadata too. Checked by
    ``parse_items``/``load_items`` (limits, one line per problem).
    """

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(
        default=None, description="The item's text (at most 100,000 characters)."
    )
    text: str | None = Field(default=None, description="The text, when not given as content.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Kept with the item and its results (title, source...)."
    )

    def record(self) -> dict[str, Any]:
        """The record ``parse_items`` checks (only the keys given)."""
        given = {k: v for k, v in (("content", self.content), ("text", self.text)) if v is not None}
        return {**given, "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class ItemError:
    """Why one item (``index``) is refused; ``index`` is None for the whole set (count)."""

    index: int | None
    reason: str
    location: str = ""  # "line 4", "row 7"; empty for in-memory records

    def __str__(self) -> str:
        if self.index is None:
            return self.reason
        where = f"{self.location} (item {self.index})" if self.location else f"item {self.index}"
        return f"{where}: {self.reason}"


class ItemsInvalid(ConfigurationError):
    code = "BP-ITEMS"

    def __init__(self, source: str, errors: list[ItemError]):
        self.errors = list(errors)
        shown = "\n".join(f"  {e}" for e in self.errors[:_MESSAGE_LISTING_LIMIT])
        more = len(self.errors) - _MESSAGE_LISTING_LIMIT
        if more > 0:
            shown += f"\n  ... and {more} more"
        count = len(self.errors)
        super().__init__(
            f"{source}: {count} problem{'s' if count != 1 else ''} with the items, nothing stored\n{shown}",
            details={
                "source": source,
                "errors": [
                    {"index": e.index, "location": e.location, "reason": e.reason}
                    for e in self.errors
                ],
            },
        )


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Entry:
    """A record read from somewhere, or the reason it could not even be read."""

    location: str
    record: Any = None
    unreadable: str | None = None


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_record(record: Any) -> tuple[str | None, dict[str, Any] | None, list[str]]:
    """(content, metadata, reasons); content/metadata are None when a reason is given."""
    if not isinstance(record, dict):
        return None, None, [f"an item must be an object, got {_type_name(record)}"]
    present = [k for k in CONTENT_KEYS if k in record]
    reasons: list[str] = []
    content: Any = None
    if not present:
        reasons.append("missing content (give it under 'content' or 'text')")
    elif len(present) > 1:
        reasons.append("has both 'content' and 'text'; give the text under only one of them")
    else:
        content = record[present[0]]
        if content is None:
            reasons.append(f"'{present[0]}' is empty")
        elif not isinstance(content, str):
            reasons.append(f"'{present[0]}' must be text, got {_type_name(content)}")
        elif not content.strip():
            reasons.append(f"'{present[0]}' is empty")
        elif len(content) > MAX_CONTENT_CHARS:
            reasons.append(
                f"'{present[0]}' is {len(content):,} characters; the limit is {MAX_CONTENT_CHARS:,}"
            )
    metadata = {k: v for k, v in record.items() if k not in CONTENT_KEYS and k != "metadata"}
    if "metadata" in record:
        nested = record["metadata"]
        if not isinstance(nested, dict):
            reasons.append(f"'metadata' must be an object, got {_type_name(nested)}")
        else:
            clash = sorted(str(k) for k in nested if k in metadata)
            if clash:
                reasons.append(
                    f"metadata key {clash[0]!r} is given both inside and outside 'metadata'"
                )
            metadata.update(nested)
    if reasons:
        return None, None, reasons
    return content, metadata, []


def _check(entries: Iterable[_Entry], source: str) -> list[Item]:
    items: list[Item] = []
    errors: list[ItemError] = []
    count = 0
    for index, entry in enumerate(entries):
        count += 1
        if entry.unreadable is not None:
            errors.append(ItemError(index, entry.unreadable, entry.location))
            continue
        content, metadata, reasons = _check_record(entry.record)
        errors.extend(ItemError(index, reason, entry.location) for reason in reasons)
        if not reasons:
            items.append(Item(index=index, content=content, metadata=metadata))
    if count == 0:
        errors.insert(0, ItemError(None, "there are no items; a job needs at least 1"))
    elif count > MAX_ITEMS:
        errors.insert(0, ItemError(None, f"{count:,} items; a job takes at most {MAX_ITEMS:,}"))
    if errors:
        raise ItemsInvalid(source, errors)
    return items


def parse_items(records: list[dict[str, Any]], *, source: str = "items") -> list[Item]:
    """Validate in-memory records (UI config, API) into items numbered from 0."""
    if not isinstance(records, list):
        raise ItemsInvalid(
            source, [ItemError(None, f"items must be a list, got {_type_name(records)}")]
        )
    return _check((_Entry("", r) for r in records), source)


# --------------------------------------------------------------------------- files


def load_items(path: str | Path) -> list[Item]:
    """Read items from a ``.jsonl``, ``.csv`` or ``.xlsx`` file (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ConfigurationError(
            f"{path.name}: unsupported items file type {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise ConfigurationError(f"items file not found: {path}")
    readers = {".jsonl": _jsonl_entries, ".csv": _csv_entries, ".xlsx": _xlsx_entries}
    try:
        entries = list(readers[suffix](path))
    except OSError as exc:
        raise ConfigurationError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    return _check(entries, path.name)


def _jsonl_entries(path: Path) -> Iterator[_Entry]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield _Entry(where, unreadable="not valid UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                yield _Entry(where, json.loads(line))
            except json.JSONDecodeError as exc:
                yield _Entry(where, unreadable=f"not valid JSON ({exc.msg} at column {exc.colno})")


def _header(cells: list[Any], source: str) -> list[str | None]:
    names: list[str | None] = []
    seen: set[str] = set()
    for cell in cells:
        name = None if cell is None or not str(cell).strip() else str(cell).strip()
        if name is not None:
            key = name.lower() if name.lower() in CONTENT_KEYS else name
            if key in seen:
                raise ConfigurationError(
                    f"{source}: column {name!r} appears twice in the header row"
                )
            seen.add(key)
            name = key
        names.append(name)
    present = [k for k in CONTENT_KEYS if k in seen]
    if not present:
        raise ConfigurationError(f"{source}: the header row needs a 'content' or 'text' column")
    if len(present) > 1:
        raise ConfigurationError(
            f"{source}: the header row has both 'content' and 'text'; keep one"
        )
    return names


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _row_entry(names: list[str | None], cells: list[Any], where: str) -> _Entry | None:
    if all(_blank(c) for c in cells):
        return None
    if not all(_blank(c) for c in cells[len(names) :]):
        return _Entry(
            where, unreadable=f"has {len(cells)} cells but the header has {len(names)} columns"
        )
    record: dict[str, Any] = {}
    for number, (name, cell) in enumerate(zip(names, cells, strict=False), start=1):
        if name is None:
            if not _blank(cell):
                return _Entry(where, unreadable=f"column {number} has a value but no header")
            continue
        record[name] = cell
    return _Entry(where, record)


def _csv_entries(path: Path) -> Iterator[_Entry]:
    # Content may be up to 100,000 characters; a little more lets "too long" be reported as such.
    csv.field_size_limit(max(csv.field_size_limit(), 4 * MAX_CONTENT_CHARS))
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            rows = iter(reader)
            header = next(rows, None)
            if header is None:
                raise ConfigurationError(f"{path.name}: the file is empty (no header row)")
            names = _header(header, path.name)
            while True:
                try:
                    cells = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield _Entry(f"row {reader.line_num}", unreadable=f"not valid CSV ({exc})")
                    continue
                entry = _row_entry(names, list(cells), f"row {reader.line_num}")
                if entry is not None:
                    yield entry
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path.name}: not UTF-8 text; save the CSV as UTF-8") from None


def _xlsx_value(value: Any) -> Any:
    # Metadata is stored as JSON: dates and times become ISO strings.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _xlsx_entries(path: Path) -> Iterator[_Entry]:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException alike
        raise ConfigurationError(
            f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__})"
        ) from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ConfigurationError(f"{path.name}: the first sheet is empty (no header row)")
        names = _header(list(header), path.name)
        for number, cells in enumerate(rows, start=2):
            entry = _row_entry(names, [_xlsx_value(c) for c in cells], f"row {number}")
            if entry is not None:
                yield entry
    finally:
        workbook.close()
