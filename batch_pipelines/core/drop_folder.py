"""Which files in a drop folder are new or changed since a sensor last looked.

Pure: the sensor lists the folder and keeps the result as its cursor; this decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

Fingerprint = tuple[int, int]  # (mtime in ns, size in bytes)


def changed_files(cursor: str | None, current: Mapping[str, Fingerprint]) -> tuple[list[str], str]:
    """Return (paths to load, new cursor): files never seen or whose fingerprint changed."""
    seen: dict[str, list[int]] = json.loads(cursor) if cursor else {}
    changed = sorted(path for path, fp in current.items() if seen.get(path) != list(fp))
    return changed, cursor_of(current)


def cursor_of(current: Mapping[str, Fingerprint]) -> str:
    """The cursor that records ``current`` as seen."""
    return json.dumps({path: list(fp) for path, fp in sorted(current.items())})
