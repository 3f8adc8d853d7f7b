"""Listing a drop folder for the sensors that watch one (risk workbooks, document items,
role submissions): which files are there and their fingerprints. What changed since the
last look is decided by the pure ``core.drop_folder.changed_files``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batch_pipelines.core.drop_folder import Fingerprint


def fingerprints(folder: Path, pattern: str, suffixes: Iterable[str] | None = None) -> dict[str, Fingerprint]:
    """``{path: (mtime in ns, size)}`` of the files under ``folder`` matching ``pattern``
    (and, when given, one of ``suffixes``, compared case-insensitively)."""
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None
    files: dict[str, Fingerprint] = {}
    for path in sorted(folder.glob(pattern)):
        if path.is_file() and (wanted is None or path.suffix.lower() in wanted):
            stat = path.stat()
            files[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return files
