from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batch_pipelines.risk_modeling.sample_workbook import WorkbookSpec


@pytest.fixture
def write(tmp_path: Path) -> Callable[[WorkbookSpec], Path]:
    """Write a spec to a fresh file under tmp_path and return its path."""
    counter = iter(range(10_000))

    def _write(spec: WorkbookSpec, name: str | None = None) -> Path:
        return spec.write(tmp_path / (name or f"workbook_{next(counter)}.xlsx"))

    return _write
