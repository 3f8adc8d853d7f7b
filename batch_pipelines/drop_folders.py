"""Listing a drop folder for the sensors that watch one (risk workbooks, document items,
role submissions): which files are there and their fingerprints. What changed since the
last look is decided by the pure ``core.drop_folder.changed_files``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_pipelines.core.drop_folder import Fingerprint, changed_files, cursor_of


def fingerprints(
    folder: Path, pattern: str, suffixes: Iterable[str] | None = None
) -> dict[str, Fingerprint]:
    """``{path: (mtime in ns, size)}`` of the files under ``folder`` matching ``pattern``
    (and, when given, one of ``suffixes``, compared case-insensitively)."""
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None
    files: dict[str, Fingerprint] = {}
    for path in sorted(folder.glob(pattern)):
        if path.is_file() and (wanted is None or path.suffix.lower() in wanted):
            stat = path.stat()
            files[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return files


@dataclass(frozen=True)
class DropScan:
    """What a drop-folder sensor's tick found: the files new or changed since ``cursor``,
    every file's fingerprint, the next cursor, and why there is nothing to do (if so)."""

    changed: list[str]
    current: dict[str, Fingerprint]
    cursor: str | None
    nothing_to_do: str | None = None

    def cursor_without(self, paths: Iterable[str]) -> str:
        """The next cursor with ``paths`` left unseen, so the next tick looks at them again
        (e.g. invalid files, which must keep failing until fixed or removed)."""
        left_out = set(paths)
        return cursor_of({p: fp for p, fp in self.current.items() if p not in left_out})


def scan(
    folder: Path,
    pattern: str,
    cursor: str | None,
    *,
    what: str,
    suffixes: Iterable[str] | None = None,
) -> DropScan:
    """One tick's look at a drop folder (``what`` names the files in the skip message)."""
    if not folder.is_dir():
        return DropScan([], {}, cursor, f"drop folder {folder} does not exist yet")
    current = fingerprints(folder, pattern, suffixes)
    changed, next_cursor = changed_files(cursor, current)
    if not changed:
        return DropScan([], current, cursor, f"no new or changed {what}")
    return DropScan(changed, current, next_cursor)


def drop_folders_of(resources: Mapping[str, Any]) -> dict[str, Path]:
    """``{resource key: folder}`` for every resource with a ``drop_folder`` setting (each
    family's settings: risk workbooks, document items, role submissions), the value read
    from its environment variable when the setting is a ``dg.EnvVar``."""
    import dagster as dg

    folders: dict[str, Path] = {}
    for key, resource in sorted(resources.items()):
        value = getattr(resource, "drop_folder", None)
        if isinstance(value, dg.EnvVar):
            value = value.get_value()
        if isinstance(value, str) and value.strip():
            folders[key] = Path(value)
    return folders


def create_drop_folders(resources: Mapping[str, Any]) -> dict[str, Path]:
    """Create every drop folder the code location watches, so a file can be dropped (and
    the sensors look) as soon as `make dev` is up; called when the Definitions are built,
    never at import."""
    folders = drop_folders_of(resources)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders
