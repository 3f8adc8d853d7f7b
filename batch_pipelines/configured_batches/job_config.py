"""The JSON job file: which configured batches exist, what they process and when they run.

Operators add or change recurring batches by editing this file, not code. It is read when
the code location loads (each static job becomes a schedule) and again by every run, so it
is validated here, once, with pydantic, and every problem names the job and the field.

One bad job must not take the whole code location down with it: ``load_job_configuration``
returns the valid jobs *and* the problems, the definitions keep loading with the valid
ones, and the problems are shown in the UI (see ``monitors.configured_jobs_problems``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SAMPLE_JOBS_FILE = Path(__file__).with_name("sample_jobs.json")
MAX_CHUNK_SIZE = 10_000

# Job ids become schedule names and partition keys: Dagster names allow letters, digits and
# underscores only.
JOB_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
TIME_PATTERN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Placeholders a template may use: ``{{ user.name }}``, ``{{ item.data.title }}``...
TEMPLATE_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
TEMPLATE_ROOTS = frozenset(
    {
        "job",
        "tick",
        "user",
        "users",
        "item",
        "items",
        "category",
        "categories",
        "variables",
        "preference",
    }
)


class JobType(StrEnum):
    """The batch matrix: processing method x data source, and the preference dimension."""

    INDIVIDUAL_USERS = "INDIVIDUAL_USERS"
    INDIVIDUAL_CATEGORIES = "INDIVIDUAL_CATEGORIES"
    BATCH_USERS = "BATCH_USERS"
    BATCH_CATEGORIES = "BATCH_CATEGORIES"
    PREFERENCE_INDIVIDUAL_USERS = "PREFERENCE_INDIVIDUAL_USERS"
    PREFERENCE_INDIVIDUAL_CATEGORIES = "PREFERENCE_INDIVIDUAL_CATEGORIES"
    PREFERENCE_BATCH_USERS = "PREFERENCE_BATCH_USERS"
    PREFERENCE_BATCH_CATEGORIES = "PREFERENCE_BATCH_CATEGORIES"

    @property
    def is_preference(self) -> bool:
        return self.value.startswith("PREFERENCE_")

    @property
    def data_source(self) -> Literal["users", "categories"]:
        return "categories" if self.value.endswith("_CATEGORIES") else "users"

    @property
    def processing(self) -> Literal["individual", "batch"]:
        return "individual" if "INDIVIDUAL_" in self.value else "batch"


class Frequency(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"


class RuleError(ValueError):
    """A rule over several fields, raised with the field it is about so problems name it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r} (use an IANA name such as 'Europe/Paris')"
        ) from None
    return value


class ScheduleSpec(BaseModel):
    """When a static job runs: a frequency with time, day and timezone, or a cron string.

    ``time`` is local wall-clock time in ``timezone`` ("HH:MM"; for hourly jobs only the
    minutes count). ``day`` is a weekday name for weekly and biweekly jobs and a day of the
    month (1-28, so that every month has it) for monthly jobs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency: Frequency | None = None
    cron: str | None = None
    time: str = "00:00"
    day: str | int | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not TIME_PATTERN.match(value):
            raise ValueError(f"time must be HH:MM on a 24-hour clock, got {value!r}")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a valid five-field cron expression: {value!r}")
        return value

    @model_validator(mode="after")
    def _frequency_or_cron(self) -> ScheduleSpec:
        if (self.frequency is None) == (self.cron is None):
            raise RuleError("frequency", "give exactly one of 'frequency' and 'cron'")
        if self.frequency in (Frequency.WEEKLY, Frequency.BIWEEKLY):
            if not isinstance(self.day, str) or self.day.lower() not in WEEKDAYS:
                raise RuleError(
                    "day",
                    f"day of a {self.frequency} schedule must be a weekday name, got {self.day!r}",
                )
        elif self.frequency == Frequency.MONTHLY:
            if (
                isinstance(self.day, bool)
                or not isinstance(self.day, int)
                or not 1 <= self.day <= 28
            ):
                raise RuleError(
                    "day",
                    f"day of a monthly schedule must be a day of the month 1-28, got {self.day!r}",
                )
        elif self.day is not None:
            raise RuleError("day", f"'day' does not apply to a {self.frequency or 'cron'} schedule")
        return self


class Distribution(BaseModel):
    """Users who receive a reference to the batch's results in their context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: list[str] = Field(default_factory=list)


class JobConfig(BaseModel):
    """One configured batch job of the job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    type: JobType
    description: str = ""
    schedule: ScheduleSpec | None = None
    # Dagster's run queue launches higher values first (the ``dagster/priority`` tag).
    priority: int = Field(default=0, ge=-100, le=100)
    filters: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)
    # Explicit users for user jobs; when empty, users come from ``filters`` and ``limit``.
    user_ids: list[str] = Field(default_factory=list)
    category: str | None = None
    categories: list[str] = Field(default_factory=list)
    template: str = Field(min_length=1)
    # Job-level template variables; a user's preference template_overrides replace them.
    template_variables: dict[str, Any] = Field(default_factory=dict)
    purpose_id: str | None = None
    feature_type: str | None = None
    default_preferences: dict[str, Any] | None = None
    model: str = "sim-small"
    concurrency: int = Field(default=5, ge=1, le=100)
    retry_limit: int = Field(default=3, ge=0, le=10)
    chunk_size: int = Field(default=100, ge=1, le=MAX_CHUNK_SIZE)
    distribution: Distribution = Field(default_factory=Distribution)

    @field_validator("schedule", mode="before")
    @classmethod
    def _cron_string(cls, value: Any) -> Any:
        # "schedule": "0 6 * * 1" is short for {"cron": "0 6 * * 1"} in UTC.
        return {"cron": value} if isinstance(value, str) else value

    @field_validator("template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = sorted(
            {p.split(".")[0] for p in TEMPLATE_PLACEHOLDER.findall(value)} - TEMPLATE_ROOTS
        )
        if unknown:
            raise ValueError(
                f"unknown template placeholders {unknown}; use {sorted(TEMPLATE_ROOTS)}"
            )
        return value

    @model_validator(mode="after")
    def _fits_its_type(self) -> JobConfig:
        t = self.type
        if t.is_preference:
            if not self.feature_type:
                raise RuleError(
                    "feature_type",
                    f"a {t} job needs a 'feature_type' (preferences are matched on it)",
                )
            if self.schedule is not None:
                raise RuleError(
                    "schedule",
                    f"a {t} job is scheduled by its users' preferences; remove 'schedule'",
                )
        elif self.schedule is None:
            raise RuleError("schedule", f"a {t} job needs a 'schedule'")
        if t.data_source == "categories":
            if not self.category_names:
                raise RuleError("category", f"a {t} job needs 'category' or 'categories'")
        elif self.category or self.categories:
            raise RuleError(
                "category", f"a {t} job reads users; 'category'/'categories' do not apply"
            )
        if self.user_ids and (t.is_preference or t.data_source == "categories"):
            raise RuleError(
                "user_ids", f"'user_ids' apply to static user jobs only, not to a {t} job"
            )
        if len(set(self.category_names)) != len(self.category_names):
            raise RuleError("categories", f"categories are listed twice: {self.category_names}")
        return self

    @property
    def category_names(self) -> list[str]:
        return ([self.category] if self.category else []) + list(self.categories)


class JobFile(BaseModel):
    """The whole file: ``{"jobs": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[dict[str, Any]]


@dataclass(frozen=True)
class JobProblem:
    """One thing wrong with the job file: where (job id or index, field) and what."""

    source: str
    job: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.job:
            where += f", job {self.job}"
        if self.field:
            where += f", field {self.field}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "job": self.job,
            "field": self.field,
            "message": self.message,
        }


def _field_path(error: Any) -> str | None:
    parts = [str(p) for p in error["loc"]]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, RuleError):
        parts.append(cause.field)
    return ".".join(parts) or None


def parse_jobs(raw: Any, source: str = "<job file>") -> tuple[list[JobConfig], list[JobProblem]]:
    """Validate the decoded JSON: every valid job, and a problem for every invalid one.

    Jobs are independent: an invalid job is left out, the others are kept. Two jobs with
    one id are both refused (either could be the one meant), and so are two preference
    jobs of one feature type (a preference group could not tell which job it belongs to).
    """
    try:
        file = JobFile.model_validate(raw)
    except ValidationError as exc:
        return [], [
            JobProblem(source, None, _field_path(e), e["msg"])
            for e in exc.errors(include_url=False)
        ]
    jobs: list[JobConfig] = []
    problems: list[JobProblem] = []
    for index, entry in enumerate(file.jobs):
        name = str(entry.get("job_id") or f"#{index}")
        try:
            jobs.append(JobConfig.model_validate(entry))
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                msg = e["msg"].removeprefix("Value error, ")
                problems.append(JobProblem(source, name, _field_path(e), msg))
    for key, what in ((lambda j: j.job_id, "job_id"), (lambda j: j.feature_type, "feature_type")):
        seen: dict[str, list[JobConfig]] = {}
        for job in jobs:
            if what == "feature_type" and not job.type.is_preference:
                continue
            seen.setdefault(key(job), []).append(job)
        for value, same in seen.items():
            if len(same) > 1:
                ids = sorted({j.job_id for j in same})
                problems.append(
                    JobProblem(
                        source,
                        ", ".join(ids),
                        what,
                        f"{what} {value!r} is used by {len(same)} jobs; none of them is loaded",
                    )
                )
                jobs = [j for j in jobs if j not in same]
    return jobs, problems


def load_job_configuration(path: str | Path) -> tuple[list[JobConfig], list[JobProblem]]:
    """Read and validate the job file; never raises for bad content (see ``parse_jobs``)."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        # A binary file (a spreadsheet, an archive) given by mistake: say so, not a traceback.
        return [], [
            JobProblem(
                source,
                None,
                None,
                f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "the job file is JSON text",
            )
        ]
    except OSError as exc:
        return [], [
            JobProblem(
                source,
                None,
                None,
                f"cannot read the job file ({exc.strerror or type(exc).__name__})",
            )
        ]
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [
            JobProblem(
                source,
                None,
                None,
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            )
        ]
    return parse_jobs(raw, source)
