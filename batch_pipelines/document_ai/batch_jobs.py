"""Batch job specifications and the job lifecycle of seed 002.

A batch job runs every item of ``items`` through the phases of one pipeline template.
``BatchJobSpec`` is what is checked before anything is stored; which pipeline names exist
is checked by the caller against the loaded templates (see ``check_pipeline``).

Lifecycle (statuses PENDING, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED). User actions:

- start:  PENDING -> RUNNING
- pause:  RUNNING -> PAUSED (in-flight items finish first; that is the runner's job)
- resume: PAUSED or FAILED -> RUNNING (from the last checkpoint)
- cancel: anything but COMPLETED or CANCELLED -> CANCELLED
- delete: allowed unless RUNNING (pause or cancel it first)

The run itself ends a RUNNING job with ``complete`` or ``fail``. Every function is pure: it
takes a status and returns the next one, or raises ``IllegalTransition`` (code
``BP-TRANSITION``) with a message naming the action and the status, for the CLI and UI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from batch_pipelines.core.errors import ConfigurationError, IllegalTransition, shorten
from batch_pipelines.core.names import name_problem
from batch_pipelines.document_ai.items import MAX_ITEMS, Item
from batch_pipelines.document_ai.pipelines import (
    PhaseSpec,
    PipelineTemplate,
    check_phase_count,
    check_unique_phase_names,
)

__all__ = [
    "ACTIONS",
    "BatchJobSpec",
    "DocJobStatus",
    "JobOptions",
    "allowed_actions",
    "can_delete",
    "cancel",
    "check_delete",
    "check_pipeline",
    "complete",
    "fail",
    "job_template",
    "next_status",
    "pause",
    "resume",
    "start",
]


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(default=5, ge=1, le=50)
    checkpoint_frequency: int = Field(default=10, ge=1, le=100)
    auto_start: bool = True
    cost_budget: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    # For translation phases (seed 002's book translation); the prompt's default otherwise.
    target_language: str | None = Field(default=None, min_length=1, max_length=60)


class BatchJobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The name becomes the job's partition key and export file name, the project and the
    # pipeline folder names of the drop folder: each is an allowed name (core.names), checked
    # here so the CLI, the launchpad, the drop sensor and the API refuse the same values.
    name: str
    project_id: str
    pipeline: str
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)
    options: JobOptions = JobOptions()
    # The job's own phases (seed 002's createJob takes them), validated like a template's
    # and used instead of the pipeline template's; None: the template's phases.
    phases: list[PhaseSpec] | None = None

    _phase_count = field_validator("phases", mode="before")(check_phase_count)
    _unique_phases = field_validator("phases")(check_unique_phase_names)

    @field_validator("name", "project_id", "pipeline")
    @classmethod
    def _allowed_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("items")
    @classmethod
    def _numbered_from_zero(cls, items: list[Item]) -> list[Item]:
        # Results, checkpoints and error messages refer to items by index.
        for position, item in enumerate(items):
            if item.index != position:
                raise ValueError(
                    f"item at position {position} has index {item.index}; items must be numbered 0, 1, 2, ..."
                )
        return items


def check_pipeline(
    spec: BatchJobSpec, known: Mapping[str, PipelineTemplate] | Iterable[str]
) -> None:
    """Raise ConfigurationError when ``spec.pipeline`` is not one of the ``known`` templates,
    or the job's own phases do not number as many as its pipeline's: in Dagster each runs
    as the pipeline's phase asset at the same position."""
    names = sorted(known)
    if spec.pipeline not in names:
        raise ConfigurationError(
            f"unknown pipeline {shorten(spec.pipeline)}; available: {', '.join(names) or '(none)'}"
        )
    template = known[spec.pipeline] if isinstance(known, Mapping) else None
    if template and spec.phases is not None and len(spec.phases) != len(template.phases):
        raise ConfigurationError(
            f"phases: the job gives {len(spec.phases)} phases; pipeline {spec.pipeline} runs "
            f"{len(template.phases)} ({', '.join(p.name for p in template.phases)}), and a job's "
            "own phases replace them one for one"
        )


def job_template(
    template: PipelineTemplate, phases: Sequence[PhaseSpec] | None
) -> PipelineTemplate:
    """The template a job runs: its pipeline's, with the job's own phases when it has them."""
    if not phases:
        return template
    return template.model_copy(update={"phases": list(phases)})


# --------------------------------------------------------------------------- lifecycle


class DocJobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


S = DocJobStatus

# action -> (statuses it is allowed from, resulting status, the rule in words)
ACTIONS: dict[str, tuple[frozenset[DocJobStatus], DocJobStatus, str]] = {
    "start": (frozenset({S.PENDING}), S.RUNNING, "only a PENDING job can be started"),
    "pause": (frozenset({S.RUNNING}), S.PAUSED, "only a RUNNING job can be paused"),
    "resume": (
        frozenset({S.PAUSED, S.FAILED}),
        S.RUNNING,
        "only a PAUSED or FAILED job can be resumed",
    ),
    "cancel": (
        frozenset(set(S) - {S.COMPLETED, S.CANCELLED}),
        S.CANCELLED,
        "a COMPLETED or CANCELLED job cannot be cancelled",
    ),
    "complete": (frozenset({S.RUNNING}), S.COMPLETED, "only a RUNNING job can complete"),
    "fail": (frozenset({S.RUNNING}), S.FAILED, "only a RUNNING job can fail"),
}
_DELETABLE = frozenset(set(S) - {S.RUNNING})


def _status(status: DocJobStatus | str) -> DocJobStatus:
    try:
        return DocJobStatus(status)
    except ValueError:
        raise IllegalTransition(
            f"unknown job status {status!r}; expected one of {', '.join(DocJobStatus)}"
        ) from None


def next_status(action: str, status: DocJobStatus | str) -> DocJobStatus:
    """The status ``action`` leads to from ``status``, or IllegalTransition naming the rule."""
    current = _status(status)
    allowed, target, rule = ACTIONS[action]
    if current not in allowed:
        raise IllegalTransition(
            f"cannot {action} a job that is {current}: {rule}",
            details={"action": action, "status": str(current)},
        )
    return target


def start(status: DocJobStatus | str) -> DocJobStatus:
    return next_status("start", status)


def pause(status: DocJobStatus | str) -> DocJobStatus:
    return next_status("pause", status)


def resume(status: DocJobStatus | str) -> DocJobStatus:
    return next_status("resume", status)


def cancel(status: DocJobStatus | str) -> DocJobStatus:
    return next_status("cancel", status)


def complete(status: DocJobStatus | str) -> DocJobStatus:
    """The run finished every item (successfully or with per-item failures recorded)."""
    return next_status("complete", status)


def fail(status: DocJobStatus | str) -> DocJobStatus:
    """The run stopped on an error; the job can be resumed from its last checkpoint."""
    return next_status("fail", status)


def can_delete(status: DocJobStatus | str) -> bool:
    return _status(status) in _DELETABLE


def check_delete(status: DocJobStatus | str) -> None:
    current = _status(status)
    if current not in _DELETABLE:
        raise IllegalTransition(
            f"cannot delete a job that is {current}: pause or cancel it first",
            details={"action": "delete", "status": str(current)},
        )


def allowed_actions(status: DocJobStatus | str) -> frozenset[str]:
    """User actions (start, pause, resume, cancel, delete) legal from ``status``."""
    current = _status(status)
    names = {a for a in ("start", "pause", "resume", "cancel") if current in ACTIONS[a][0]}
    if current in _DELETABLE:
        names.add("delete")
    return frozenset(names)
