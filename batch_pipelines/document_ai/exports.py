"""Export a document job's per-item results to JSONL or XLSX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from batch_pipelines.core.errors import ConfigurationError, shorten
from batch_pipelines.core.names import path_under
from batch_pipelines.document_ai.pipelines import PipelineTemplate
from batch_pipelines.document_ai.reports import item_results
from batch_pipelines.document_ai.store import DocumentJob, DocumentJobStore

FORMATS = ("jsonl", "xlsx")
# Excel refuses cells longer than this.
XLSX_CELL_LIMIT = 32_767
PAGE = 1000


def _pages(jobs: DocumentJobStore, job: DocumentJob, template: PipelineTemplate):
    for offset in range(0, job.item_count, PAGE):
        yield from item_results(jobs, job, template, offset=offset, limit=PAGE)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    if isinstance(text, str) and len(text) > XLSX_CELL_LIMIT:
        return text[: XLSX_CELL_LIMIT - 20] + " ...[truncated]"
    return text


def export_results(
    jobs: DocumentJobStore, job: DocumentJob, template: PipelineTemplate, folder: Path, fmt: str
) -> Path:
    """Write every item's result to ``folder/<job key>.<fmt>``; return the path.

    The file is written under a temporary name and renamed, so a reader never sees half.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigurationError(
            f"format: expected one of {', '.join(FORMATS)}, got {shorten(fmt)}"
        )
    # The file name comes from the job's name: it must stay inside the exports folder.
    path = path_under(folder, f"{job.key}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if fmt == "jsonl":
        with partial.open("w", encoding="utf-8") as out:
            for row in _pages(jobs, job, template):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        phases = [p.name for p in template.phases]
        book = Workbook(write_only=True)
        sheet = book.create_sheet("results")
        sheet.append(
            [
                "index",
                "status",
                "input",
                "output",
                *(f"{p} output" for p in phases),
                *(f"{p} score" for p in phases),
                "errors",
                "cost",
            ]
        )
        for row in _pages(jobs, job, template):
            sheet.append(
                [
                    row["index"],
                    row["status"],
                    _cell(row["input"]),
                    _cell(row["output"]),
                    *(_cell(row["phase_outputs"].get(p)) for p in phases),
                    *(row["validation_scores"].get(p) for p in phases),
                    _cell(row["errors"] or None),
                    row["cost"],
                ]
            )
        book.save(partial)
    partial.replace(path)
    return path
