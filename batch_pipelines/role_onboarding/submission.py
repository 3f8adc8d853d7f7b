"""Validating a batch submission: which roles go on, which are skipped and why.

Seed 000 skips a role with a validation error and lets the rest of the batch go on, so
validation here never raises for one bad role: it returns the valid roles (with their
partition keys) and the invalid ones (with their index, field and reason). Only a
problem with the whole submission (no company, an unknown option) is an error.
Pure: no Dagster, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_pipelines.core.errors import ConfigurationError, shorten
from batch_pipelines.core.names import check_name

MAX_ROLE_NAME = 200
MAX_ROLES = 10_000
BATCH_ID = re.compile(r"^batch-[0-9a-f]{12}$")
OPTION_NAMES = ("skip_enhancement_workflows", "force_rerun")
ROLE_FIELDS = ("role_name", "draup_role_name", "draup_role_id")


@dataclass(frozen=True)
class RoleOptions:
    """What the seed's ``options`` object holds, for a submission or a retry."""

    skip_enhancement_workflows: bool = False
    force_rerun: bool = False

    def to_dict(self) -> dict[str, bool]:
        return {
            "skip_enhancement_workflows": self.skip_enhancement_workflows,
            "force_rerun": self.force_rerun,
        }


@dataclass(frozen=True)
class ValidRole:
    index: int
    role_name: str
    draup_role_name: str | None
    partition_key: str


@dataclass(frozen=True)
class InvalidRole:
    index: int
    role_name: str | None
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "role_name": self.role_name,
            "field": self.field,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        name = f" ({self.role_name!r})" if self.role_name else ""
        return f"roles[{self.index}]{name} {self.field}: {self.reason}"


@dataclass(frozen=True)
class ValidatedSubmission:
    company_id: str
    options: RoleOptions
    created_by: str | None
    valid: list[ValidRole] = field(default_factory=list)
    invalid: list[InvalidRole] = field(default_factory=list)


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by '-' ("Claims Adjuster (Sr.)" -> "claims-adjuster-sr")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def partition_key(company_id: str, role_name: str) -> str:
    """The role's partition: ``{company_id}/{role_slug}``; one partition per company role, so
    a role's history (runs, materializations) stays on one row of the UI across batches."""
    return f"{company_id}/{slugify(role_name)}"


def split_partition_key(key: str) -> tuple[str, str]:
    company, sep, slug = key.partition("/")
    if not sep or not company or not slug or slugify(slug) != slug:
        raise ConfigurationError(
            f"role partition key {shorten(key)} is not of the form company_id/role_slug"
        )
    return check_name(company, "company_id of the role partition key"), slug


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError
    stripped = " ".join(value.split())
    return stripped or None


def _check_name(value: str, field_name: str) -> str | None:
    if len(value) > MAX_ROLE_NAME:
        return f"is {len(value)} characters long, at most {MAX_ROLE_NAME} are allowed"
    if not slugify(value):
        return "has no letter or digit, so it cannot name a role"
    if any(ch in value for ch in "\a\b\f\v\0"):
        return "contains control characters"
    return None


def validate_company_id(company_id: Any) -> str:
    """The company id, which becomes the first part of every role's partition key and run
    tags: checked by the project's one rule for user-chosen names (``check_name``), so it
    never holds the '/' that separates it from the role, a ',' (the UI's partition selector
    splits on commas) or '..'."""
    if not isinstance(company_id, str) or not company_id.strip():
        raise ConfigurationError("company_id: required (a non-empty string)")
    return check_name(company_id.strip(), "company_id")


def parse_options(raw: Any, *, where: str = "options") -> RoleOptions:
    if raw is None:
        return RoleOptions()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: must be an object with {', '.join(OPTION_NAMES)}")
    unknown = sorted(set(raw) - set(OPTION_NAMES))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown option(s) {unknown}; known: {list(OPTION_NAMES)}"
        )
    values = {}
    for name in OPTION_NAMES:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise ConfigurationError(f"{where}.{name}: must be true or false, got {value!r}")
        values[name] = value
    return RoleOptions(**values)


def validate_submission(
    company_id: Any,
    roles: Any,
    *,
    options: RoleOptions | Mapping[str, Any] | None = None,
    created_by: Any = None,
) -> ValidatedSubmission:
    """Check a submission as the seed's push-batch body (``company_id``, ``roles`` of
    ``{role_name, draup_role_name?}`` with ``draup_role_id`` accepted as an alias,
    ``options``, ``created_by``).

    Invalid roles are returned with their index, field and reason and skipped; a role named
    twice (same partition) is skipped the second time. Raises ConfigurationError only when
    the submission as a whole cannot be read.
    """
    company = validate_company_id(company_id)
    opts = options if isinstance(options, RoleOptions) else parse_options(options)
    if created_by is not None and (not isinstance(created_by, str) or len(created_by) > 320):
        raise ConfigurationError("created_by: must be a string of at most 320 characters")
    if not isinstance(roles, Sequence) or isinstance(roles, str | bytes):
        raise ConfigurationError("roles: must be a list of {role_name, draup_role_name?} objects")
    if not roles:
        raise ConfigurationError("roles: the list is empty, nothing to onboard")
    if len(roles) > MAX_ROLES:
        raise ConfigurationError(
            f"roles: {len(roles)} roles in one batch, at most {MAX_ROLES} are allowed"
        )

    valid: list[ValidRole] = []
    invalid: list[InvalidRole] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(roles):
        if not isinstance(raw, Mapping):
            invalid.append(InvalidRole(index, None, "role", "must be an object with role_name"))
            continue
        unknown = sorted(set(raw) - set(ROLE_FIELDS))
        name_value = raw.get("role_name")
        shown_name = name_value if isinstance(name_value, str) else None
        if unknown:
            invalid.append(
                InvalidRole(
                    index, shown_name, unknown[0], f"unknown field; known: {list(ROLE_FIELDS)}"
                )
            )
            continue
        try:
            role_name = _text(name_value)
            draup_name = _text(raw.get("draup_role_name"))
            draup_id = _text(raw.get("draup_role_id"))
        except TypeError:
            bad = next(
                f for f in ROLE_FIELDS if raw.get(f) is not None and not isinstance(raw.get(f), str)
            )
            invalid.append(InvalidRole(index, shown_name, bad, "must be a string"))
            continue
        if role_name is None:
            invalid.append(InvalidRole(index, None, "role_name", "is required"))
            continue
        if draup_name and draup_id and draup_name != draup_id:
            invalid.append(
                InvalidRole(
                    index,
                    role_name,
                    "draup_role_id",
                    "is an alias of draup_role_name and disagrees with it",
                )
            )
            continue
        draup = draup_name or draup_id
        problem = _check_name(role_name, "role_name")
        problem_field = "role_name"
        if problem is None and draup is not None:
            problem = _check_name(draup, "draup_role_name")
            problem_field = "draup_role_name" if draup_name else "draup_role_id"
        if problem is not None:
            invalid.append(InvalidRole(index, role_name, problem_field, problem))
            continue
        key = partition_key(company, role_name)
        if key in seen:
            invalid.append(
                InvalidRole(
                    index,
                    role_name,
                    "role_name",
                    f"same role as roles[{seen[key]}] ({key}); skipped",
                )
            )
            continue
        seen[key] = index
        valid.append(
            ValidRole(index=index, role_name=role_name, draup_role_name=draup, partition_key=key)
        )
    return ValidatedSubmission(
        company_id=company, options=opts, created_by=created_by, valid=valid, invalid=invalid
    )


def new_batch_id() -> str:
    """``batch-`` and 12 random hex digits, as in the seed."""
    return f"batch-{secrets.token_hex(6)}"


def check_batch_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id.strip()):
        raise ConfigurationError(f"batch id {batch_id!r} is not of the form batch-<12 hex digits>")
    return batch_id.strip()


def workflow_id(batch_id: str, round_number: int, partition: str) -> str:
    """``role-onboard-<12 hex>``: deterministic from batch, round and role, so a write that is
    repeated produces the same id (and run key) instead of a second workflow."""
    digest = hashlib.sha256(f"{batch_id}|{round_number}|{partition}".encode()).hexdigest()[:12]
    return f"role-onboard-{digest}"


# Environment variables of the family, read through the role_onboarding_settings resource
# (the CLI resolves the same resource).
SUBMISSION_FLAG_ENV = "ROLE_ONBOARDING_BATCH_SUBMISSION_ENABLED"
TTL_ENV = "ROLE_ONBOARDING_BATCH_TTL_SECONDS"
DASHBOARD_BASE_URL_ENV = "ROLE_ONBOARDING_DASHBOARD_BASE_URL"


def read_json_file(path: Path, shown: str) -> Any:
    """The JSON in ``path``; a ConfigurationError naming it as ``shown`` when it cannot be
    read or where its JSON breaks (line and column)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{shown}: cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{shown}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
