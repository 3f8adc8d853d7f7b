"""Benchmark: parse and validate master configuration workbooks.

Analysts validate a workbook interactively (CLI, drop-folder sensor), so a fixture-sized
workbook should answer in well under a second and a workbook ten times larger (a bigger
book of business) in a few seconds. Two benchmarks, each ending with one ``BENCH`` JSON
line for ``make bench``:

- ``workbook_parse_fixture``: the shared real workbook (skipped if absent), goal 1 s;
- ``workbook_parse_10x``: a builder-generated valid workbook with ten times the fixture's
  data rows, goal 5 s.

The measure is the fastest of a few runs: the machine's noise only ever adds time, so the
minimum is the best estimate of what the code costs. Writing the generated workbook is not
timed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from batch_pipelines.risk_modeling.sample_workbook import (
    data_row_count,
    expected_job_counts,
    scale_for_rows,
    write_valid_workbook,
)
from batch_pipelines.risk_modeling.workbook import SHEET_ORDER, validate_workbook
from benchmarks.common import bench_line

FIXTURE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "valid_excel_configuration.xlsx"
)
# Data rows of the fixture (configuration sheets, headers excluded), used when it is absent.
FIXTURE_DATA_ROWS = 748
FIXTURE_GOAL_S = 1.0
TENFOLD_GOAL_S = 5.0


def _fixture_data_rows(path: Path) -> int:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        count = 0
        for name in SHEET_ORDER:
            rows = [
                r
                for r in workbook[name].iter_rows(values_only=True)
                if any(v is not None for v in r)
            ]
            count += len(rows) - (0 if name == "Metadata" else 1)
        return count
    finally:
        workbook.close()


def _time(path: Path, repeat: int) -> tuple[float, dict[str, int]]:
    best = float("inf")
    counts: dict[str, int] = {}
    for _ in range(repeat):
        start = time.perf_counter()
        result = validate_workbook(path)
        best = min(best, time.perf_counter() - start)
        if not result.valid:
            raise SystemExit(f"{path} is not valid: {[str(i) for i in result.issues[:5]]}")
        counts = result.job_counts
    return best, counts


def _report(name: str, measured: float, goal: float) -> None:
    bench_line(name, "s", measured, goal, digits=4)


def bench_fixture() -> None:
    if not FIXTURE.exists():
        print(f"workbook_parse_fixture: skipped, {FIXTURE} not found")
        return
    measured, counts = _time(FIXTURE, repeat=5)
    print(
        f"workbook_parse_fixture: {measured:.3f} s to parse and validate {FIXTURE.name} "
        f"({sum(counts.values())} jobs), goal {FIXTURE_GOAL_S:.0f} s"
    )
    _report("workbook_parse_fixture", measured, FIXTURE_GOAL_S)


def bench_tenfold() -> None:
    rows = _fixture_data_rows(FIXTURE) if FIXTURE.exists() else FIXTURE_DATA_ROWS
    scale = scale_for_rows(10 * rows)
    with tempfile.TemporaryDirectory() as directory:
        path = write_valid_workbook(Path(directory) / "tenfold.xlsx", scale=scale)
        measured, counts = _time(path, repeat=3)
    if counts != expected_job_counts(scale):
        raise SystemExit(f"unexpected job counts for the generated workbook: {counts}")
    print(
        f"workbook_parse_10x: {measured:.3f} s to parse and validate a generated workbook of "
        f"{data_row_count(scale)} data rows (10 x {rows}), {sum(counts.values())} jobs, goal {TENFOLD_GOAL_S:.0f} s"
    )
    _report("workbook_parse_10x", measured, TENFOLD_GOAL_S)


def main() -> None:
    bench_fixture()
    bench_tenfold()


if __name__ == "__main__":
    main()
