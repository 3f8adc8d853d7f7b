"""JSON objects given as text (a setting, a launchpad field, a CLI option): one rule for all.

Pure: the caller names the field, and a bad value is a one-line ConfigurationError saying
where (line and column) or what it got instead of an object.
"""

from __future__ import annotations

import json
from typing import Any

from batch_pipelines.core.errors import ConfigurationError


def parse_json_object(text: str | None, field: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it is not given (None or blank)."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{field}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            details={"field": field},
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{field}: must be a JSON object, not {type(value).__name__}",
            details={"field": field},
        )
    return value
