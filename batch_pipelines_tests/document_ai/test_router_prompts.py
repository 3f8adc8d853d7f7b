"""Model routing by task type, and the prompts the model (or the simulator) is sent."""

from __future__ import annotations

import pytest

from batch_pipelines.core.costs import DEFAULT_PRICES
from batch_pipelines.document_ai.prompts import (
    CONTEXT_HEADER,
    INSTRUCTIONS,
    build_messages,
    parse_score,
    validation_messages,
)
from batch_pipelines.document_ai.router import (
    DEFAULT_ROUTER,
    DEFAULT_ROUTES,
    DEFAULT_VALIDATOR_MODEL,
    ModelRouter,
)
from batch_pipelines.simulators.models import complete, detect_task, summarize

TASK_TYPES = [
    "code", "research", "creative", "analysis", "chat", "summarization", "translation",
    "entity_extraction", "ocr_cleanup", "xml_tagging", "text_cleanup", "categorize",
    "embedding_generation",
]  # fmt: skip


def test_every_task_type_has_a_priced_route():
    assert set(DEFAULT_ROUTES) == set(TASK_TYPES)
    for model in {*DEFAULT_ROUTER.models(), DEFAULT_VALIDATOR_MODEL}:
        DEFAULT_PRICES.price_for(model)  # raises for an unpriced model
    assert DEFAULT_ROUTER.model_for("ocr_cleanup") == "sim-small"
    assert DEFAULT_ROUTER.model_for("categorize") == "sim-small"
    assert DEFAULT_ROUTER.model_for("summarization") == "sim-large"
    assert DEFAULT_ROUTER.model_for("entity_extraction") == "sim-large"
    assert DEFAULT_ROUTER.model_for("embedding_generation") == "sim-embed"


def test_a_phase_override_wins_and_unrouted_tasks_get_the_fallback():
    router = ModelRouter({"summarization": "big"}, fallback="small")
    assert router.model_for("summarization") == "big"
    assert router.model_for("summarization", "gpt-4o") == "gpt-4o"
    assert router.model_for("chat", "gpt-4o") == "gpt-4o"
    assert router.model_for("chat") == "small"
    assert router.model_for("summarization", "  ") == "big"  # a blank override is no override
    assert router.models() == {"big", "small"}


def test_a_router_refuses_blank_model_names():
    with pytest.raises(ValueError, match="fallback"):
        ModelRouter({}, fallback="")
    with pytest.raises(ValueError, match="summarization"):
        ModelRouter({"summarization": " "}, fallback="x")


SIM_TASKS = {
    "summarization": "summarize",
    "entity_extraction": "entities",
    "categorize": "categorize",
    "ocr_cleanup": "clean",
    "text_cleanup": "clean",
    "xml_tagging": "xml",
    "translation": "translate",
}


@pytest.mark.parametrize("task_type", sorted(INSTRUCTIONS))
def test_each_instruction_names_exactly_its_own_task(task_type):
    (system, user) = build_messages(task_type, "Some text.")
    assert system["role"] == "system" and user == {"role": "user", "content": "Some text."}
    # What the simulator reads from the system prompt; open-ended tasks carry no hint.
    assert detect_task(system["content"]) == SIM_TASKS.get(task_type)


def test_passages_come_under_a_context_header_before_the_document():
    text = "Ada Lovelace wrote the first program. She worked with Charles Babbage. It ran never."
    passages = ["A score of validation notes about classification.", "  ", "Second passage."]
    messages = build_messages("summarization", text, passages=passages)
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    context = messages[1]["content"]
    assert context.startswith(f"{CONTEXT_HEADER}\n[1] A score of validation")
    assert "[2] Second passage." in context and "[3]" not in context  # blanks dropped
    assert messages[-1]["content"] == text
    # The hint words inside a passage do not change the task: the answer is the summary.
    assert complete(messages) == summarize(text) == "Ada Lovelace wrote the first program."


def test_translation_names_the_target_language():
    (system, _) = build_messages("translation", "Hello", target_language="French")
    assert "into French" in system["content"]
    assert complete(
        build_messages("translation", "Hello there", target_language="German")
    ).startswith("[de]")
    assert "into English" in build_messages("translation", "x")[0]["content"]


def test_an_unknown_task_type_has_no_prompt():
    with pytest.raises(ValueError, match="no prompt for task type 'poetry'"):
        build_messages("poetry", "x")


def test_validation_asks_for_a_json_score_of_output_against_input():
    messages = validation_messages("summarization", "The input.", "The summary.")
    assert "Validate the summary" in messages[0]["content"] and "score" in messages[0]["content"]
    assert messages[1]["content"] == "Input:\nThe input.\n\nOutput:\nThe summary."
    assert detect_task(messages[0]["content"]) == "score"
    assert parse_score(complete(messages)) is not None


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 8, "reason": "fine"}', 8),
        ('Here you go:\n```json\n{"score": 3, "reason": "thin"}\n```', 3),
        ('{"score": "9"}', 9),
        ("Score: 7 - mostly faithful", 7),
        ("I would rate it 6/10.", 6),
        ("6 out of 10", 6),
        ("10", 10),
        ('{"score": 11}', None),
        ('{"score": 0}', None),
        ('{"score": true}', None),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score
