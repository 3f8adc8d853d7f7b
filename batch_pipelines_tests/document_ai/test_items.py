"""Batch job items: records and JSONL/CSV/XLSX files, every bad item reported, the limits."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.document_ai.items import (
    MAX_CONTENT_CHARS,
    MAX_ITEMS,
    Item,
    ItemError,
    ItemsInvalid,
    load_items,
    parse_items,
)


def refused(records) -> list[ItemError]:
    with pytest.raises(ItemsInvalid) as info:
        parse_items(records)
    return info.value.errors


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


# --- records -----------------------------------------------------------------------


def test_records_become_items_numbered_from_zero_with_other_keys_as_metadata():
    items = parse_items([{"content": "a", "title": "A"}, {"text": "b", "chapterNum": 2}])
    assert items == [
        Item(index=0, content="a", metadata={"title": "A"}),
        Item(index=1, content="b", metadata={"chapterNum": 2}),
    ]


def test_the_seeds_nested_metadata_object_is_merged_into_the_metadata():
    [item] = parse_items([{"content": "x", "metadata": {"title": "T", "author": "A"}, "id": 7}])
    assert item.metadata == {"title": "T", "author": "A", "id": 7}


def test_every_bad_item_is_reported_with_its_index_and_reason():
    errors = refused(
        [
            {"content": "fine"},
            {"title": "no text"},
            {"content": ""},
            {"content": "   \n"},
            {"content": 42},
            {"content": None},
            "not an object",
            {"content": "a", "text": "b"},
            {"content": "x" * (MAX_CONTENT_CHARS + 1)},
            {"content": "x", "metadata": ["not", "an", "object"]},
            {"content": "x", "title": "a", "metadata": {"title": "b"}},
        ]
    )
    assert [(e.index, e.reason) for e in errors] == [
        (1, "missing content (give it under 'content' or 'text')"),
        (2, "'content' is empty"),
        (3, "'content' is empty"),
        (4, "'content' must be text, got a number"),
        (5, "'content' is empty"),
        (6, "an item must be an object, got text"),
        (7, "has both 'content' and 'text'; give the text under only one of them"),
        (8, "'content' is 100,001 characters; the limit is 100,000"),
        (9, "'metadata' must be an object, got a list"),
        (10, "metadata key 'title' is given both inside and outside 'metadata'"),
    ]


def test_the_error_message_lists_the_items_and_says_nothing_is_stored():
    with pytest.raises(ItemsInvalid) as info:
        parse_items([{"content": "ok"}, {"text": ""}], source="upload")
    assert (
        info.value.message
        == "upload: 1 problem with the items, nothing stored\n  item 1: 'text' is empty"
    )
    assert info.value.code == "BP-ITEMS"
    assert isinstance(info.value, ConfigurationError)
    assert info.value.details["errors"] == [
        {"index": 1, "location": "", "reason": "'text' is empty"}
    ]


def test_zero_items_are_refused():
    assert [(e.index, e.reason) for e in refused([])] == [
        (None, "there are no items; a job needs at least 1")
    ]


def test_a_non_list_is_refused():
    assert refused({"content": "x"})[0].reason == "items must be a list, got an object"  # type: ignore[arg-type]


def test_ten_thousand_items_are_accepted():
    assert len(parse_items([{"content": "x"}] * MAX_ITEMS)) == 10_000


def test_ten_thousand_and_one_items_are_refused_and_bad_items_are_still_listed():
    records = [{"content": "x"}] * MAX_ITEMS + [{"content": ""}]
    errors = refused(records)
    assert [(e.index, e.reason) for e in errors] == [
        (None, "10,001 items; a job takes at most 10,000"),
        (10_000, "'content' is empty"),
    ]


def test_content_of_exactly_one_hundred_thousand_characters_is_accepted():
    [item] = parse_items([{"content": "é" * MAX_CONTENT_CHARS}])
    assert len(item.content) == 100_000


def test_content_of_one_hundred_thousand_and_one_characters_is_refused():
    [error] = refused([{"content": "é" * (MAX_CONTENT_CHARS + 1)}])
    assert (error.index, error.reason) == (
        0,
        "'content' is 100,001 characters; the limit is 100,000",
    )


def test_a_long_list_of_errors_is_shortened_in_the_message_but_complete_in_errors():
    with pytest.raises(ItemsInvalid) as info:
        parse_items([{"content": ""}] * 60)
    assert len(info.value.errors) == 60
    assert info.value.message.endswith("  ... and 10 more")


# --- files -------------------------------------------------------------------------


def test_a_jsonl_file_gives_items_and_skips_blank_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "items.jsonl",
        [json.dumps({"content": "one", "n": 1}), "", json.dumps({"text": "two"})],
    )
    assert load_items(path) == [
        Item(index=0, content="one", metadata={"n": 1}),
        Item(index=1, content="two", metadata={}),
    ]


def test_a_jsonl_file_reports_every_bad_line_by_line_number_and_item_index(tmp_path):
    path = write_jsonl(
        tmp_path / "items.jsonl",
        [json.dumps({"content": "ok"}), '{"content": "broken', json.dumps({"text": ""}), "[1, 2]"],
    )
    with pytest.raises(ItemsInvalid) as info:
        load_items(path)
    assert [(e.index, e.location) for e in info.value.errors] == [
        (1, "line 2"),
        (2, "line 3"),
        (3, "line 4"),
    ]
    lines = info.value.message.splitlines()
    assert lines[0] == "items.jsonl: 3 problems with the items, nothing stored"
    assert lines[1].startswith("  line 2 (item 1): not valid JSON (")
    assert lines[2] == "  line 3 (item 2): 'text' is empty"
    assert lines[3] == "  line 4 (item 3): an item must be an object, got a list"


def test_an_empty_jsonl_file_has_zero_items(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [""])
    with pytest.raises(ItemsInvalid, match="no items"):
        load_items(path)


def test_a_csv_file_gives_items_with_the_other_columns_as_metadata(tmp_path):
    path = write_csv(
        tmp_path / "items.csv",
        [
            ["title", " Content "],
            ["A", "first text"],
            ["", ""],
            ["B", "second, with comma\nand newline"],
        ],
    )
    assert load_items(path) == [
        Item(index=0, content="first text", metadata={"title": "A"}),
        Item(index=1, content="second, with comma\nand newline", metadata={"title": "B"}),
    ]


def test_a_csv_file_reports_bad_rows_by_row_number(tmp_path):
    path = write_csv(
        tmp_path / "items.csv",
        [
            ["text", "id"],
            ["ok", "1"],
            ["", "2"],
            ["x" * (MAX_CONTENT_CHARS + 1), "3"],
            ["a", "4", "extra"],
        ],
    )
    with pytest.raises(ItemsInvalid) as info:
        load_items(path)
    assert [(e.index, e.location, e.reason) for e in info.value.errors] == [
        (1, "row 3", "'text' is empty"),
        (2, "row 4", "'text' is 100,001 characters; the limit is 100,000"),
        (3, "row 5", "has 3 cells but the header has 2 columns"),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["title", "body"], ["a", "b"]], "needs a 'content' or 'text' column"),
        ([["content", "text"], ["a", "b"]], "has both 'content' and 'text'"),
        ([["content", "a", "a"], ["x", "1", "2"]], "column 'a' appears twice"),
        ([], "the file is empty"),
    ],
)
def test_a_csv_file_with_a_bad_header_is_refused_clearly(tmp_path, rows, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ConfigurationError, match=message):
        load_items(path)


def test_an_xlsx_file_gives_items_with_dates_as_iso_text(tmp_path):
    path = write_xlsx(
        tmp_path / "items.xlsx",
        [
            ["Text", "pages", "received"],
            ["chapter one", 12, datetime(2024, 5, 1, 9, 30)],
            [None, None, None],
        ],
    )
    assert load_items(path) == [
        Item(
            index=0,
            content="chapter one",
            metadata={"pages": 12, "received": "2024-05-01T09:30:00"},
        )
    ]


def test_an_xlsx_file_reports_bad_rows_by_excel_row_number(tmp_path):
    path = write_xlsx(
        tmp_path / "items.xlsx",
        [["content", "id"], ["ok", 1], [None, 2], [3.5, 3]],
    )
    with pytest.raises(ItemsInvalid) as info:
        load_items(path)
    assert [(e.index, e.location, e.reason) for e in info.value.errors] == [
        (1, "row 3", "'content' is empty"),
        (2, "row 4", "'content' must be text, got a number"),
    ]


def test_a_file_that_is_not_a_workbook_is_refused_clearly(tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text("not a zip", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="fake.xlsx: not a readable .xlsx workbook"):
        load_items(path)


def test_an_unknown_extension_is_refused_naming_the_supported_ones(tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(
        ConfigurationError,
        match=r"unsupported items file type '.txt'; use one of .jsonl, .csv, .xlsx",
    ):
        load_items(path)


def test_a_missing_file_is_refused_naming_the_path(tmp_path):
    with pytest.raises(ConfigurationError, match="items file not found: .*absent.jsonl"):
        load_items(tmp_path / "absent.jsonl")
