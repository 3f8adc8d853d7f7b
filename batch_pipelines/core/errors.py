"""Typed errors with stable codes.

Codes are part of the product's interface (CLI --json output, metadata, notifications), so
they never change meaning once published. Messages must never contain secrets.
"""

from __future__ import annotations

import re
from typing import Any

# Values echoed in a message: enough to recognise one, never a whole cell or file.
SHOWN_CHARS = 80


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters with the full length said, for messages
    that name a user's value (a 32 KB workbook cell must not be echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f" ({len(value)} characters)" if isinstance(value, str | bytes) else ""
    return f"{text[: limit - 1]}…{length}"


# A URL's user information runs to the LAST "@" before the host: a password may hold an
# unencoded "@" (then all of it is hidden, not only what follows its first "@").
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
# Any parameter whose name ends in one of these words (access_token, client_secret, X-Api-Key,
# the sig of a Teams Workflows webhook URL). No leading \b: "_" is a word character, so
# \btoken= would miss access_token=.
_SECRET_PARAMS = re.compile(r"(?i)([\w-]*(?:key|token|secret|password|sig|signature))=[^&\s]+")


def hide_secrets(message: str, limit: int = 300) -> str:
    """``message`` without credentials in URLs (``scheme://user:password@``) or secret query
    parameters, cut to ``limit`` characters: safe for run metadata and for an unexpected
    error's text shown to a user (a library's message may quote the URL it was given)."""
    message = _URL_CREDENTIALS.sub(r"\1***@", message)
    return _SECRET_PARAMS.sub(r"\1=***", message)[:limit]


class BatchPipelinesError(Exception):
    """Base of every error the project raises on purpose."""

    code: str = "BP-000"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class IllegalTransition(BatchPipelinesError):
    code = "BP-TRANSITION"


class ConfigurationError(BatchPipelinesError):
    """Bad input: a configuration file, workbook, option or environment value."""

    code = "BP-CONFIG"


class BatchError(BatchPipelinesError):
    """A batch cannot be created, validated, submitted or changed as asked."""

    code = "BP-BATCH"


class JobError(BatchPipelinesError):
    """A single job cannot be submitted, tracked or resubmitted as asked."""

    code = "BP-JOB"


class CycleNotActive(BatchError):
    code = "BP-CYCLE-NOT-ACTIVE"


class NotFound(BatchPipelinesError):
    code = "BP-NOT-FOUND"


class StoreError(BatchPipelinesError):
    code = "BP-STORE"


class UnexpectedError(BatchPipelinesError):
    """An exception the code did not expect, as the command line reports it (the
    traceback only with --debug)."""

    code = "BP-UNEXPECTED"
