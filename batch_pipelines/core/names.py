"""Names users choose that become paths, partition keys or file names.

A cycle type, a document job's name, a project, a company or a pipeline ends up in a folder
name, a Dagster partition key and file names. Each is checked against one allowed pattern
before it is used, and every file the product writes from such a name is checked to stay
under its root, so no value can climb out of the data folder (``../../outside``) or hide a
path separator in a partition key. Pure: no Dagster, no I/O beyond resolving paths.
"""

from __future__ import annotations

import re
from pathlib import Path

from batch_pipelines.core.errors import ConfigurationError, shorten

MAX_NAME_LENGTH = 100
# Letters, digits, space, '_', '-' and '.', starting and ending with a letter or digit;
# no two dots in a row (so never '..').
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.-]*[A-Za-z0-9])?")
NAME_RULE = (
    f"1-{MAX_NAME_LENGTH} characters: letters, digits, spaces, '_', '-' and '.', starting and "
    "ending with a letter or digit, without '..'"
)


class UnsafeName(ConfigurationError):
    """A user-supplied name that would not be safe as a path, partition key or file name."""

    code = "BP-NAME"


def name_problem(value: object) -> str | None:
    """Why ``value`` is not an allowed name, or None when it is."""
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long; allowed: {NAME_RULE}"
    if not _NAME.fullmatch(value) or ".." in value:
        return f"allowed: {NAME_RULE}"
    return None


def check_name(value: object, field: str) -> str:
    """``value`` when it is an allowed name; else ``UnsafeName`` naming ``field`` and the rule
    (the value itself is shortened, never echoed whole)."""
    problem = name_problem(value)
    if problem is not None:
        raise UnsafeName(
            f"{field} {shorten(value)} is not allowed: {problem}", details={"field": field}
        )
    return value  # type: ignore[return-value]


def path_under(root: str | Path, *parts: str | Path) -> Path:
    """``root / parts...`` resolved, refused with ``UnsafeName`` when it would leave ``root``
    (through '..', an absolute part or a symlink)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        shown = "/".join(str(p) for p in parts)
        raise UnsafeName(f"{shorten(shown)} would be written outside {base}; refused")
    return target
