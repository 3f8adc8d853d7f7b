"""Pipeline templates: the shipped three load, and every bad file is named with its field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.document_ai.pipelines import (
    SHIPPED_PIPELINES_DIR,
    PipelineTemplate,
    TaskType,
    load_pipeline,
    load_pipelines,
)

GOOD = """\
name: demo
phases:
  - name: clean
    task_type: text_cleanup
  - name: summarize
    task_type: summarization
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_pipeline(path)
    return info.value.message


def test_the_task_types_are_exactly_the_thirteen_of_the_issue():
    assert [t.value for t in TaskType] == [
        "code",
        "research",
        "creative",
        "analysis",
        "chat",
        "summarization",
        "translation",
        "entity_extraction",
        "ocr_cleanup",
        "xml_tagging",
        "text_cleanup",
        "categorize",
        "embedding_generation",
    ]


def test_the_three_shipped_templates_load_with_their_phases_in_order():
    templates = load_pipelines(SHIPPED_PIPELINES_DIR)
    tasks = {name: [p.task_type for p in t.phases] for name, t in templates.items()}
    assert tasks == {
        "document_pipeline": [TaskType.OCR_CLEANUP, TaskType.SUMMARIZATION, TaskType.CATEGORIZE],
        "book_translation": [TaskType.TEXT_CLEANUP, TaskType.XML_TAGGING, TaskType.TRANSLATION],
        "embedding_regeneration": [TaskType.EMBEDDING_GENERATION],
    }


def test_book_translation_validates_the_translation_at_a_minimum_score_of_eight():
    translation = load_pipelines()["book_translation"].phase("translation")
    assert translation.validation.enabled
    assert translation.validation.min_score == 8


def test_a_phase_without_options_gets_the_defaults():
    phase = load_pipelines()["embedding_regeneration"].phases[0]
    assert (phase.model, phase.use_rag, phase.validation.enabled, phase.validation.min_score) == (
        None,
        False,
        False,
        7,
    )


def test_a_model_override_and_rag_are_read(tmp_path):
    path = write(
        tmp_path,
        "t.yaml",
        "name: t\nphases:\n  - name: a\n    task_type: chat\n    model: m-large\n    use_rag: true\n",
    )
    phase = load_pipeline(path).phases[0]
    assert (phase.model, phase.use_rag) == ("m-large", True)


def test_an_unknown_task_type_names_the_file_the_field_path_and_the_choices(tmp_path):
    path = write(tmp_path, "document_pipeline.yaml", GOOD.replace("summarization", "summarize"))
    message = error_of(path)
    assert message.startswith(
        "document_pipeline.yaml: phases.1.task_type: 'summarize' is not one of"
    )
    assert "summarization" in message and "embedding_generation" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\nphases: []\n", "t.yaml: phases: a pipeline needs 1 to 10 phases, got 0"),
        (
            "name: t\nphases:\n"
            + "".join(f"  - name: p{i}\n    task_type: chat\n" for i in range(11)),
            "t.yaml: phases: a pipeline needs 1 to 10 phases, got 11",
        ),
        ("phases:\n  - name: a\n    task_type: chat\n", "t.yaml: name: required field is missing"),
        (
            "name: t\nphases:\n  - name: a\n",
            "t.yaml: phases.0.task_type: required field is missing",
        ),
        (
            "name: t\nphases:\n  - name: a\n    task_type: chat\n    validation: {min_score: 11}\n",
            "t.yaml: phases.0.validation.min_score:",
        ),
        (
            "name: t\nphases:\n  - name: a\n    task_type: chat\n    validation: {min_score: 0}\n",
            "t.yaml: phases.0.validation.min_score:",
        ),
        (
            "name: t\nphases:\n  - name: a\n    taskType: chat\n",
            "t.yaml: phases.0.taskType: unknown field",
        ),
        (
            "name: t\nphases:\n  - name: a\n    task_type: chat\n  - name: a\n    task_type: code\n",
            "t.yaml: phases: phase name 'a' is used twice (phases.0 and phases.1)",
        ),
        (
            "name: t\nphases:\n  - name: two words\n    task_type: chat\n",
            "t.yaml: phases.0.name: 'two words' is not a valid name",
        ),
        (
            "name: t\nphases:\n  - name: a\n    task_type: chat\n    use_rag: maybe\n",
            "t.yaml: phases.0.use_rag:",
        ),
        ("- just\n- a list\n", "t.yaml: a pipeline template must be a mapping, the file is a list"),
        ("", "t.yaml: a pipeline template must be a mapping, the file is empty"),
        ("name: [unclosed\n", "t.yaml: not valid YAML at line"),
    ],
)
def test_each_invalid_template_is_refused_naming_the_file_and_the_field(tmp_path, text, expected):
    lines = error_of(write(tmp_path, "t.yaml", text)).splitlines()
    assert any(line.startswith(expected) for line in lines), lines


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = "name: t\nphases:\n  - name: a\n    task_type: nope\n  - name: b\n    task_type: chat\n    extra: 1\n"
    lines = error_of(write(tmp_path, "t.yaml", text)).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "phases.0.task_type",
        "phases.1.extra",
    ]


def test_a_missing_template_file_is_a_configuration_error(tmp_path):
    assert "not found" in error_of(tmp_path / "absent.yaml")


def test_the_same_template_name_in_two_files_is_refused_naming_both(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yml", GOOD)
    with pytest.raises(ConfigurationError) as info:
        load_pipelines(tmp_path)
    assert info.value.message == "b.yml: name: pipeline 'demo' is already defined in a.yaml"


def test_a_folder_with_a_bad_file_lists_every_bad_file(tmp_path):
    shutil.copytree(SHIPPED_PIPELINES_DIR, tmp_path / "p")
    write(tmp_path / "p", "x_bad.yaml", "name: x\nphases: []\n")
    write(tmp_path / "p", "y_bad.yaml", "name: y\n")
    with pytest.raises(ConfigurationError) as info:
        load_pipelines(tmp_path / "p")
    lines = info.value.message.splitlines()
    assert [line.split(":")[0] for line in lines] == ["x_bad.yaml", "y_bad.yaml"]


def test_files_other_than_yaml_are_ignored_and_an_empty_folder_gives_nothing(tmp_path):
    write(tmp_path, "README.md", "not a template")
    assert load_pipelines(tmp_path) == {}


def test_a_missing_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="pipelines folder not found"):
        load_pipelines(tmp_path / "nope")


def test_a_template_is_frozen_so_a_loaded_one_cannot_be_changed_by_a_caller():
    template = load_pipelines()["document_pipeline"]
    with pytest.raises(ValueError):
        template.name = "other"  # type: ignore[misc]
    assert isinstance(template, PipelineTemplate)
