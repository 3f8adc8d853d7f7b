"""Pipeline templates: YAML files describing a sequence of model phases.

A template is a name, a description and 1-10 phases run in order over every item of a batch
job. Each phase names a task type (the router picks a model from it unless the phase
overrides the model), whether retrieval context is added (``use_rag``) and whether a
validator scores the output (``validation``).

Templates live one per file in a folder (``SHIPPED_PIPELINES_DIR`` holds the three of seed
002). Loading is strict: unknown keys are refused (a typo such as ``taskType`` would
otherwise silently disable a setting) and every error names the file and the field path,
e.g. ``document_pipeline.yaml: phases.1.task_type: 'summarize' is not one of code, ...``.

Template and phase names become Dagster asset names (one asset per phase), so they are
restricted to letters, digits and underscores, starting with a letter.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batch_pipelines.core.errors import ConfigurationError, shorten

__all__ = [
    "MAX_PHASES",
    "SHIPPED_PIPELINES_DIR",
    "PhaseSpec",
    "PipelineTemplate",
    "TaskType",
    "ValidationSpec",
    "check_phase_count",
    "check_unique_phase_names",
    "load_phases",
    "load_pipeline",
    "load_pipelines",
]

SHIPPED_PIPELINES_DIR = Path(__file__).resolve().parent / "templates"
MAX_PHASES = 10
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


class TaskType(StrEnum):
    CODE = "code"
    RESEARCH = "research"
    CREATIVE = "creative"
    ANALYSIS = "analysis"
    CHAT = "chat"
    SUMMARIZATION = "summarization"
    TRANSLATION = "translation"
    ENTITY_EXTRACTION = "entity_extraction"
    OCR_CLEANUP = "ocr_cleanup"
    XML_TAGGING = "xml_tagging"
    TEXT_CLEANUP = "text_cleanup"
    CATEGORIZE = "categorize"
    EMBEDDING_GENERATION = "embedding_generation"


Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ValidationSpec(_Strict):
    enabled: bool = False
    min_score: int = Field(default=7, ge=1, le=10)
    # Attempts of the phase's call while the score stays below min_score (seed 002: 3).
    max_attempts: int = Field(default=3, ge=1, le=10)


class PhaseSpec(_Strict):
    name: Name
    task_type: TaskType = Field(strict=False)  # strict enums refuse plain strings
    model: Annotated[str, Field(min_length=1)] | None = None
    use_rag: bool = False
    validation: ValidationSpec = ValidationSpec()


def check_phase_count(phases: Any) -> Any:
    """1 to MAX_PHASES phases, checked before the phases themselves so the count is reported
    in plain words."""
    if isinstance(phases, list) and not 1 <= len(phases) <= MAX_PHASES:
        raise ValueError(f"a pipeline needs 1 to {MAX_PHASES} phases, got {len(phases)}")
    return phases


def check_unique_phase_names(phases: list[PhaseSpec] | None) -> list[PhaseSpec] | None:
    first: dict[str, int] = {}
    for i, phase in enumerate(phases or ()):
        if phase.name in first:
            raise ValueError(
                f"phase name {phase.name!r} is used twice (phases.{first[phase.name]} "
                f"and phases.{i}); phase names must be unique"
            )
        first[phase.name] = i
    return phases


class PipelineTemplate(_Strict):
    name: Name
    description: str = ""
    phases: list[PhaseSpec]

    # The same rules hold for a job's own phases (batch_jobs.BatchJobSpec.phases).
    _one_to_ten_phases = field_validator("phases", mode="before")(check_phase_count)
    _unique_phase_names = field_validator("phases")(check_unique_phase_names)

    def phase(self, name: str) -> PhaseSpec:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)


# --------------------------------------------------------------------------- errors


def _describe(error: dict[str, Any]) -> str:
    """One pydantic error as ``field.path: plain message``."""
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind, value = error["type"], error.get("input")
    if kind == "enum":
        message = f"{shorten(value)} is not one of {', '.join(TaskType)}"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "string_pattern_mismatch":
        message = (
            f"{shorten(value)} is not a valid name (letters, digits and underscores, "
            "starting with a letter, at most 64 characters)"
        )
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        # The value is shortened: a 100 KB field must not be echoed whole.
        message = f"{error['msg']}, got {shorten(value)}"
    return f"{path}: {message}"


def describe_validation_error(exc: ValidationError) -> str:
    """Every problem of a pydantic error as ``field.path: plain message``, joined by "; "."""
    return "; ".join(_describe(e) for e in exc.errors(include_url=False))


def _validation_failure(source: str, exc: ValidationError) -> ConfigurationError:
    problems = [_describe(e) for e in exc.errors(include_url=False)]
    return ConfigurationError(
        "\n".join(f"{source}: {p}" for p in problems),
        details={"file": source, "errors": problems},
    )


# --------------------------------------------------------------------------- loading


def load_pipeline(path: str | Path) -> PipelineTemplate:
    """Read and validate one template file; ConfigurationError names the file and field."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"pipeline template not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{source}: cannot be read ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigurationError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigurationError(
            f"{source}: a pipeline template must be a mapping, the file is {kind}"
        )
    try:
        return PipelineTemplate.model_validate(data)
    except ValidationError as exc:
        raise _validation_failure(source, exc) from None


def load_phases(path: str | Path) -> list[dict[str, Any]]:
    """A job's own phases from a YAML file: a list of phases, or a mapping with ``phases``
    (a template file works too). Only read here; they are validated with the job."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"phases file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{path.name}: not valid YAML{where}") from None
    if isinstance(data, dict):
        data = data.get("phases")
    if not isinstance(data, list):
        raise ConfigurationError(
            f"{path.name}: expected a list of phases (or a mapping with 'phases')"
        )
    return data


def load_pipelines(folder: str | Path = SHIPPED_PIPELINES_DIR) -> dict[str, PipelineTemplate]:
    """Every ``*.yaml``/``*.yml`` template in ``folder`` by template name.

    All files are checked before raising, so one error lists every bad file. A template
    name defined in two files is an error naming both. An empty folder gives ``{}``.
    """
    templates, problems = load_valid_pipelines(folder)
    if problems:
        raise ConfigurationError("\n".join(problems), details={"folder": str(folder)})
    return templates


def load_valid_pipelines(
    folder: str | Path = SHIPPED_PIPELINES_DIR,
) -> tuple[dict[str, PipelineTemplate], list[str]]:
    """The valid templates of ``folder`` and a problem (file and field) per invalid one.

    The code location builds assets from the valid ones, so one bad file does not take the
    other pipelines (or the other families) down; the problems are shown by a sensor.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigurationError(f"pipelines folder not found: {folder}")
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and p.is_file()
    )
    templates: dict[str, PipelineTemplate] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for path in files:
        try:
            template = load_pipeline(path)
        except ConfigurationError as exc:
            problems.append(exc.message)
            continue
        if template.name in templates:
            problems.append(
                f"{path.name}: name: pipeline {template.name!r} is already defined in {origin[template.name]}"
            )
            continue
        templates[template.name] = template
        origin[template.name] = path.name
    return templates, problems
