"""Metadata shapes shared by every family's assets and jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

# Error texts in a table cell: enough to recognise the error, short enough to scan.
ERROR_CHARS = 300


def metadata_table(
    columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]
) -> dg.TableMetadataValue:
    """A table for the UI from ``(name, type)`` columns and one mapping per row (the caller
    limits the rows: the event log keeps every materialization's metadata)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    names = [name for name, _ in columns]
    return dg.MetadataValue.table(
        [dg.TableRecord({n: row[n] for n in names}) for row in rows], schema=schema
    )
