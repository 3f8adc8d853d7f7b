"""Chat messages for each task type, for the validator, and reading the validator's score.

The system prompt states the task in words any model understands and that the local
simulator recognises ("Summarize", "Extract entities", "Categorize", "Clean up", "XML",
"Translate"). Each instruction names exactly one task: the simulator picks the task from
hint words, so an instruction must never mention another task's words (a summary prompt
that said "entities" would be answered with an entity list).

Retrieved passages go in their own user message under a ``Context:`` header, *before* the
document, not in the system prompt: a passage that happened to contain a hint word would
otherwise change the task, and the document stays the last user message (the text to work
on).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CONTEXT_HEADER",
    "INSTRUCTIONS",
    "build_messages",
    "parse_score",
    "validation_messages",
]

CONTEXT_HEADER = "Context:"
DEFAULT_TARGET_LANGUAGE = "English"

INSTRUCTIONS: dict[str, str] = {
    "summarization": (
        "Summarize the document in a few sentences, keeping its key facts and names."
    ),
    "entity_extraction": (
        "Extract entities (people, organisations, places, dates and amounts) from the text. "
        "Reply with a JSON list of strings, in order of first appearance."
    ),
    "categorize": (
        "Categorize the text: reply with one word, one of science, finance, law, medicine, "
        "technology, literature or other."
    ),
    "ocr_cleanup": (
        "Clean up OCR text: fix words split across lines, misread letters and stray "
        "characters, and join wrapped lines. Keep paragraph breaks and change nothing else."
    ),
    "text_cleanup": (
        "Clean up the text: normalise whitespace and punctuation and remove stray "
        "characters. Keep paragraph breaks and the wording."
    ),
    "xml_tagging": (
        "Tag as XML: wrap the text in <document>, each paragraph in <p> and each name of a "
        "person, organisation or place in <name>. Reply with the XML only."
    ),
    # {language} is filled in by build_messages.
    "translation": (
        "Translate the user's text into {language}. Keep names, numbers and paragraph breaks. "
        "Reply with the translation only."
    ),
    "research": (
        "You are a research assistant. Answer the request thoroughly and factually, citing "
        "the material you were given where it helps."
    ),
    "analysis": (
        "You are an analyst. Examine the text and report its key findings, evidence and "
        "open questions."
    ),
    "code": "You are a careful programming assistant. Answer with working code and brief notes.",
    "creative": "You are a creative writer. Respond to the request with original prose.",
    "chat": "You are a helpful assistant. Answer the user's message.",
}

# How the validator names each task's output.
_OUTPUT_NAMES: dict[str, str] = {
    "summarization": "summary",
    "entity_extraction": "entity list",
    "categorize": "category",
    "ocr_cleanup": "cleaned text",
    "text_cleanup": "cleaned text",
    "xml_tagging": "XML markup",
    "translation": "translation",
}


def _instruction(task_type: str, target_language: str | None) -> str:
    try:
        template = INSTRUCTIONS[str(task_type)]
    except KeyError:
        raise ValueError(
            f"no prompt for task type {task_type!r}; known: {', '.join(sorted(INSTRUCTIONS))}"
        ) from None
    if str(task_type) == "translation":
        language = (target_language or DEFAULT_TARGET_LANGUAGE).strip() or DEFAULT_TARGET_LANGUAGE
        return template.format(language=language)
    return template


def build_messages(
    task_type: str,
    content: str,
    *,
    passages: Sequence[str] = (),
    target_language: str | None = None,
) -> list[dict[str, Any]]:
    """The chat messages doing ``task_type`` on ``content``.

    ``passages`` (retrieved reference text) come as one user message headed ``Context:``,
    numbered, before the document. ``target_language`` is for translation (default
    English). Embedding generation has no prompt: embed the content itself.
    """
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _instruction(task_type, target_language)}
    ]
    used = [p.strip() for p in passages if p and p.strip()]
    if used:
        numbered = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(used, start=1))
        messages.append({"role": "user", "content": f"{CONTEXT_HEADER}\n{numbered}"})
    messages.append({"role": "user", "content": content})
    return messages


def validation_messages(task_type: str, input_text: str, output_text: str) -> list[dict[str, Any]]:
    """Messages asking a validator for a 1-10 JSON score of ``output_text`` given its input."""
    what = _OUTPUT_NAMES.get(str(task_type), "response")
    system = (
        f"Validate the {what} below against its input. Give it a score from 1 (unusable) to "
        "10 (excellent) for faithfulness to the input and completeness. Reply with JSON only: "
        '{"score": <integer 1-10>, "reason": "<one sentence>"}.'
    )
    user = f"Input:\n{input_text}\n\nOutput:\n{output_text}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_SCORE_FIELD = re.compile(r'"?score"?\s*[:=]\s*"?(\d+(?:\.\d+)?)', re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\.?\s*$")


def _as_score(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or not 1 <= number <= 10:  # NaN or out of range
        return None
    return round(number)


def parse_score(text: str) -> int | None:
    """The 1-10 score in a validator's answer, or None when there is none.

    Reads ``{"score": N}`` (also inside surrounding prose or a code fence), then
    ``score: N``, ``N/10`` or a bare number. A number outside 1-10 is not a score.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    candidates = [text.strip(), *_JSON_OBJECT.findall(text)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and "score" in data:
            return _as_score(data["score"])
    for pattern in (_SCORE_FIELD, _OUT_OF_TEN, _BARE_NUMBER):
        match = pattern.search(text)
        if match:
            return _as_score(match.group(1))
    return None
