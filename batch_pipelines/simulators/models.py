"""An OpenAI-compatible model endpoint whose answers are deterministic and actually derived
from the input.

The document pipelines need a model to run against on a laptop, in tests and in the demo.
An echo would make every phase look the same; random text would make runs unreproducible
and validation scores meaningless. So each task is done by a small, deterministic
algorithm picked from a hint in the prompt (extractive summary, entity list, keyword
category, cleanup, XML tagging, pseudo-translation, a validation score), token counts are
computed the same way every time, and embeddings put similar texts close together.

Cost accounting is what makes this simulator worth having: ``Idempotency-Key`` replays the
first answer without billing again, ``stats()`` says how many calls were billed and how
many tokens they used, and ``omit_usage_rate`` drops ``usage`` from some answers (it is
optional in the real API) so the ledger's fallback path gets exercised.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import struct
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_pipelines.simulators.faults import Decision, FaultInjector, FaultPlan

DEFAULT_EMBEDDING_DIMENSIONS = 64

# ----------------------------------------------------------------------------- text tools

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“'(\[]?[A-Z0-9])")
# Two or more capitalised words, optionally joined by the particles names use.
_NAME = re.compile(
    r"\b[A-Z][\w'’-]*(?:\s+(?:(?:of|de|van|von|der|da|la|le|du|del)\s+)?[A-Z][\w'’-]*)+"
)
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,]\d+)*%?")
_STOPWORDS = frozenset(
    """a an and are as at be been but by for from had has have he her his i in into is it its
    of on or our she so than that the their them then there these they this those to was we
    were what when which who will with would you your not no do does did can could should
    may might must also more most such only other over after before about between under""".split()  # noqa: SIM905
)
# Sentence-initial words that are capitalised only because they start the sentence.
_NAME_PREFIX_NOISE = frozenset(
    {"The", "A", "An", "In", "On", "At", "By", "For", "And", "But", "When", "While"}
)
_VOWEL_ROTATION = str.maketrans("aeiouAEIOU", "eiouaEIOUA")

# Keywords per category, space-separated; order matters for ties (earlier wins).
TAXONOMY: dict[str, str] = {
    "science": "research experiment physics chemistry biology hypothesis laboratory scientist "
    "scientific theory molecule species climate particle quantum",
    "finance": "market stock bank investment investor revenue profit price interest loan capital "
    "insurance dollar earnings fund portfolio financial",
    "law": "court law legal judge contract regulation statute attorney plaintiff defendant rights "
    "liability compliance lawsuit tribunal",
    "medicine": "patient disease clinical treatment doctor hospital drug health symptom therapy "
    "medical vaccine diagnosis medicine",
    "technology": "software computer algorithm network internet digital device cloud database code "
    "robot programming server technology",
    "literature": "novel poem poetry author chapter character story book literary narrative fiction "
    "verse writer prose",
}
_KEYWORD_CATEGORY = {
    word: category for category, keywords in TAXONOMY.items() for word in keywords.split()
}

LANGUAGE_CODES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "japanese": "ja",
    "korean": "ko",
    "chinese": "zh",
}


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def count_tokens(text: str) -> int:
    """About four tokens per three words, like English BPE tokenisers; deterministic."""
    n = len(text.split())
    return math.ceil(n * 4 / 3) if n else 0


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` (whole words) that counts at most ``max_tokens``."""
    kept = text.split()[: (max_tokens * 3) // 4]
    while kept and count_tokens(" ".join(kept)) > max_tokens:
        kept.pop()
    return " ".join(kept)


def split_sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


def summarize(text: str) -> str:
    """Extractive: the highest-scoring sentences by content-word frequency, in text order."""
    sentences = split_sentences(text)
    if len(sentences) <= 2:
        return " ".join(sentences)
    freq = Counter(
        w for w in (w.lower() for w in words(text)) if len(w) > 2 and w not in _STOPWORDS
    )

    def score(sentence: str) -> float:
        ws = [w.lower() for w in words(sentence)]
        # Divided by the square root of the length so long sentences do not win by size.
        return sum(freq[w] for w in ws if w in freq) / math.sqrt(len(ws) or 1)

    keep = max(1, min(5, math.ceil(len(sentences) / 4)))
    ranked = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))[:keep]
    return " ".join(sentences[i] for i in sorted(ranked))


def find_names(text: str) -> list[tuple[int, str]]:
    """(offset, name) of every run of two or more capitalised words, minus sentence openers."""
    names = []
    for match in _NAME.finditer(text):
        parts = match.group(0).split()
        while len(parts) > 1 and parts[0] in _NAME_PREFIX_NOISE:
            parts = parts[1:]
        if len(parts) >= 2:
            names.append((match.start(), " ".join(parts)))
    return names


def extract_entities(text: str) -> str:
    """A JSON list of multi-word names and numbers, in order of first appearance."""
    numbers = [(m.start(), m.group(0).rstrip(".,")) for m in _NUMBER.finditer(text)]
    ordered = dict.fromkeys(entity for _, entity in sorted(find_names(text) + numbers))
    return json.dumps(list(ordered), ensure_ascii=False)


def categorize(text: str) -> str:
    """The taxonomy category with the most keyword hits; ties go to the earlier category."""
    counts: Counter[str] = Counter()
    for w in words(text.lower()):
        category = _KEYWORD_CATEGORY.get(w) or (
            _KEYWORD_CATEGORY.get(w[:-1]) if w.endswith("s") else None
        )
        if category:
            counts[category] += 1
    if not counts:
        return "other"
    order = list(TAXONOMY)
    return max(counts, key=lambda c: (counts[c], -order.index(c)))


def clean_text(text: str) -> str:
    """Undo what OCR and line-wrapping do to text, keeping paragraph breaks."""
    text = unicodedata.normalize("NFKC", text)  # ligatures (ﬁ -> fi), full-width forms
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad]", "", text)  # controls, soft hyphens
    text = re.sub(r"(\w)-[ \t]*\r?\n[ \t]*(\w)", r"\1\2", text)  # words hyphenated across lines
    text = re.sub(
        r"(?<=[a-z])[|1]{1,2}(?=[a-z]|\b)", lambda m: "l" * len(m.group(0)), text
    )  # wor|d, fu11
    text = re.sub(r"(?<=[a-zA-Z])0(?=[a-zA-Z])", "o", text)  # "w0rd"
    paragraphs = re.split(r"\n[ \t]*\n", text)
    cleaned = []
    for paragraph in paragraphs:
        flat = " ".join(paragraph.split())
        flat = re.sub(r"\s+([,.;:!?])", r"\1", flat)
        if flat:
            cleaned.append(flat)
    return "\n\n".join(cleaned)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_tag(text: str) -> str:
    """Paragraphs as <p>, multi-word names as <name>, under one <document> root."""
    out = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        tagged = _escape(flat)
        for name in dict.fromkeys(name for _, name in find_names(flat)):
            tagged = tagged.replace(_escape(name), f"<name>{_escape(name)}</name>")
        out.append(f"<p>{tagged}</p>")
    return "<document>" + "".join(out) + "</document>"


def target_language(instruction: str) -> str:
    match = re.search(r"\b(?:to|into)\s+([A-Z][a-z]+|[a-z]{2}\b)", instruction)
    return match.group(1) if match else "English"


def pseudo_translate(text: str, language: str) -> str:
    """Vowels rotated (a->e->i->o->u->a), marked with the target language.

    Consonants, numbers and punctuation survive, so a validator comparing consonant
    skeletons (see ``score_output``) can still tell a faithful translation from junk.
    """
    code = LANGUAGE_CODES.get(language.lower(), language.lower())
    return f"[{code}] " + text.translate(_VOWEL_ROTATION)


_SECTION = re.compile(
    r"^\s*(input|original|source|text|output|summary|translation|result|response|candidate)\s*:\s*",
    re.IGNORECASE | re.MULTILINE,
)
_INPUT_LABELS = frozenset({"input", "original", "source", "text"})


def _skeleton(word: str) -> str:
    # Vowel-only words ("a", "e") all map to "", so they match each other.
    return re.sub(r"[aeiou]", "", word.lower())


_LANGUAGE_MARK = re.compile(r"^\s*\[[^\]]{1,20}\]\s*")


def score_output(text: str) -> str:
    """{"score": 1..10, "reason": ...} from how much of the output the input supports.

    With labelled sections (``Input:`` / ``Output:`` and synonyms) the score combines word
    overlap (on consonant skeletons, so pseudo-translations still match their source) with
    a plausible length ratio; without them it judges the text alone by how word-like it is.
    """
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        kind = "input" if match.group(1).lower() in _INPUT_LABELS else "output"
        sections.setdefault(kind, text[match.end() : end].strip())
    if "input" in sections and "output" in sections:
        source = {_skeleton(w) for w in words(re.sub(r"<[^>]+>", " ", sections["input"]))}
        output = _LANGUAGE_MARK.sub("", re.sub(r"<[^>]+>", " ", sections["output"]))
        produced = [_skeleton(w) for w in words(output)]
        if not produced:
            return json.dumps({"score": 1, "reason": "empty output"})
        overlap = sum(1 for w in produced if w in source) / len(produced)
        ratio = len(produced) / max(1, len(source))
        ratio_ok = 1.0 if 0.05 <= ratio <= 2.0 else 0.4
        score = 1 + round(9 * (0.7 * overlap + 0.3 * ratio_ok))
        reason = f"overlap {overlap:.2f}, length ratio {ratio:.2f}"
    else:
        ws = words(text)
        if not ws:
            return json.dumps({"score": 1, "reason": "empty text"})
        alpha = sum(1 for w in ws if w.isalpha()) / len(ws)
        sentences = split_sentences(text)
        avg = len(ws) / max(1, len(sentences))
        shape = 1.0 if 4 <= avg <= 40 else 0.5
        score = 1 + round(9 * (0.6 * alpha + 0.4 * shape))
        reason = f"alphabetic words {alpha:.2f}, words per sentence {avg:.1f}"
    return json.dumps({"score": max(1, min(10, score)), "reason": reason})


def short_answer(text: str) -> str:
    first = split_sentences(text)[:1]
    gist = " ".join(" ".join(first).split()[:30])
    return f"Answer: {gist}" if gist else "Answer: (empty input)"


# Checked in this order, system prompt first: the more specific task wins when a prompt
# mentions several ("Validate this summary", "Translate the cleaned text").
_TASKS: list[tuple[tuple[str, ...], str]] = [
    (("score", "validat"), "score"),
    (("translat",), "translate"),
    (("xml",), "xml"),
    (("entit",), "entities"),
    (("categor", "classif"), "categorize"),
    (("summar",), "summarize"),
    (("clean",), "clean"),
]


def detect_task(instruction: str) -> str | None:
    lowered = instruction.lower()
    for hints, task in _TASKS:
        if any(h in lowered for h in hints):
            return task
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def complete(messages: list[dict[str, Any]]) -> str:
    """The assistant's answer to a chat, deterministic in the messages."""
    system = "\n".join(
        _content_text(m.get("content"))
        for m in messages
        if m.get("role") in ("system", "developer")
    )
    users = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    user = users[-1] if users else ""
    task = detect_task(system)
    instruction = system
    if task is None:
        task = detect_task(user)
        first, _, rest = user.partition("\n")
        if task is not None and detect_task(first) == task and rest.strip():
            # "Summarize this:\n<text>" -- the first line is the instruction, not input.
            instruction, user = first, rest
    text = user.strip()
    match task:
        case "score":
            return score_output(text)
        case "translate":
            return pseudo_translate(text, target_language(instruction))
        case "xml":
            return xml_tag(text)
        case "entities":
            return extract_entities(text)
        case "categorize":
            return categorize(text)
        case "summarize":
            return summarize(text)
        case "clean":
            return clean_text(text)
    return short_answer(text)


def embed(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector of hashed word counts: shared words mean a larger cosine similarity."""
    vector = [0.0] * dimensions
    for w in words(text.lower()):
        h = zlib.crc32(w.encode())
        vector[h % dimensions] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [round(x / norm, 6) for x in vector]


# ----------------------------------------------------------------------------- the app


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(
        json.dumps(body).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class ModelSimulator:
    """``POST /v1/chat/completions`` and ``POST /v1/embeddings`` as an ASGI app (``.app``).

    State is in memory: nothing here needs to survive a restart except the bill, and the
    bill is the caller's ledger, which ``stats()`` lets tests check against.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: FaultPlan = FaultPlan(),  # noqa: B008 -- frozen, so one shared default is safe
        omit_usage_rate: float = 0.0,
    ) -> None:
        if not 0.0 <= omit_usage_rate <= 1.0:
            raise ValueError("omit_usage_rate must be between 0 and 1")
        self.api_key = api_key
        self.faults = faults
        self.omit_usage_rate = omit_usage_rate
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._endpoint(self._chat), methods=["POST"]),
                Route("/v1/embeddings", self._endpoint(self._embeddings), methods=["POST"]),
                Route("/_sim/stats", self._stats_endpoint, methods=["GET"]),
                Route("/_sim/reset", self._reset_endpoint, methods=["POST"]),
            ],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    def reset(self) -> None:
        self._injector = FaultInjector(self.faults)
        self._stored: dict[str, tuple[int, bytes]] = {}
        self._in_flight: set[str] = set()
        self._counts: Counter[str] = Counter()
        self._calls_per_key: Counter[str] = Counter()
        self._replayed: set[str] = set()

    def stats(self, *, replayed_keys: bool = False) -> dict[str, Any]:
        """Counters; with ``replayed_keys`` also the idempotency keys answered more than once
        (what a kill test needs to tell which work a crashed client had to redo)."""
        c = self._counts
        extra = {"replayed_keys": sorted(self._replayed)} if replayed_keys else {}
        return extra | {
            "requests_total": c["requests_total"],
            "billed_calls": c["billed_calls"],
            "replays": c["replays"],
            "calls_per_key_max": max(self._calls_per_key.values(), default=0),
            "prompt_tokens_total": c["prompt_tokens"],
            "completion_tokens_total": c["completion_tokens"],
            "usage_omitted": c["usage_omitted"],
            "faults_injected": dict(sorted(self._injector.counts.items())),
        }

    # ------------------------------------------------------------------ pipeline

    def _endpoint(
        self, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler)

        return endpoint

    def _fault_response(self, decision: Decision) -> Response:
        status = decision.error_status
        self._injector.record(str(decision.kind))
        if status == 429:
            seconds = self._injector.plan.retry_after_seconds
            # Both headers the official SDK reads; -ms keeps fractional waits exact.
            headers = {
                "retry-after": self._injector.retry_after_header(),
                "retry-after-ms": str(round(seconds * 1000)),
            }
            return _error(
                429,
                "Rate limit reached (simulated).",
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        return _error(
            status or 500,
            "The server had an error while processing your request (simulated).",
            type_="server_error",
        )

    async def _serve(
        self, request: Request, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        arrived = asyncio.get_running_loop().time()
        self._counts["requests_total"] += 1
        if (
            self.api_key is not None
            and request.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        decision = self._injector.decide(may_be_slow=True)
        if decision.error_status is not None:
            await self._injector.delay(since=arrived)
            return self._fault_response(decision)
        raw = await request.body()
        key = request.headers.get("idempotency-key") or None
        if key is not None:
            if key in self._stored:
                await self._injector.delay(since=arrived)
                self._counts["replays"] += 1
                self._replayed.add(key)
                status, body = self._stored[key]
                return Response(
                    body,
                    status_code=status,
                    media_type="application/json",
                    headers={"x-sim-replay": "true"},
                )
            if key in self._in_flight:
                await self._injector.delay(since=arrived)
                return _error(
                    409,
                    "A request with this Idempotency-Key is in progress.",
                    code="idempotency_key_in_use",
                )
            self._in_flight.add(key)
        try:
            try:
                payload = json.loads(raw)
                if not isinstance(payload, dict):
                    raise _ApiError(400, "The request body must be a JSON object.")
                result = handler(payload)
            except ValueError:
                await self._injector.delay(since=arrived)
                return _error(400, "We could not parse the JSON body of your request.")
            except _ApiError as exc:
                await self._injector.delay(since=arrived)
                return _error(
                    exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code
                )
            body = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode()
            # The latency counts from arrival: the model's work happens within it. The
            # call is billed and its answer stored only when it is answered.
            await self._injector.delay(since=arrived)
            # Billed once per accepted call; a replay above is free, as with the real API.
            self._counts["billed_calls"] += 1
            if key is not None:
                self._calls_per_key[key] += 1
                self._stored[key] = (200, body)
        finally:
            if key is not None:
                self._in_flight.discard(key)
        if decision.slow:
            self._injector.record("slow")
            await self._injector.slow_down()
        return Response(body, media_type="application/json")

    def _usage(self, usage: dict[str, int]) -> dict[str, int] | None:
        self._counts["prompt_tokens"] += usage["prompt_tokens"]
        self._counts["completion_tokens"] += usage.get("completion_tokens", 0)
        if self._injector.chance(self.omit_usage_rate):
            self._counts["usage_omitted"] += 1
            return None
        return usage

    # ------------------------------------------------------------------ endpoints

    def _chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise _ApiError(400, "you must provide a model parameter", param="model")
        messages = payload.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) for m in messages)
        ):
            raise _ApiError(
                400, "'messages' must be a non-empty array of message objects.", param="messages"
            )
        max_tokens = payload.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise _ApiError(400, "'max_tokens' must be an integer >= 1.", param="max_tokens")
        content = complete(messages)
        finish_reason = "stop"
        if max_tokens is not None and count_tokens(content) > max_tokens:
            # Like the real service: the answer stops at max_tokens, never billed beyond it.
            content, finish_reason = truncate_to_tokens(content, max_tokens), "length"
        prompt_tokens = sum(count_tokens(_content_text(m.get("content"))) for m in messages)
        completion_tokens = count_tokens(content)
        result: dict[str, Any] = {
            "id": f"chatcmpl-sim{self._counts['billed_calls'] + 1:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
        }
        usage = self._usage(
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        )
        if usage is not None:
            result["usage"] = usage
        return result

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise _ApiError(400, "you must provide a model parameter", param="model")
        raw_input = payload.get("input")
        if isinstance(raw_input, str):
            texts = [raw_input]
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(t, str) for t in raw_input)
        ):
            texts = raw_input
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(t, int) for t in raw_input)
        ):
            texts = [" ".join(f"t{t}" for t in raw_input)]  # one pre-tokenised input
        else:
            raise _ApiError(
                400, "'input' must be a string or a non-empty array of strings.", param="input"
            )
        dimensions = payload.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
        if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
            raise _ApiError(
                400, "'dimensions' must be an integer between 1 and 4096.", param="dimensions"
            )
        as_base64 = payload.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector: Any = embed(text, dimensions)
            if as_base64:  # what the official SDK asks for by default
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "embedding": vector, "index": index})
        tokens = sum(count_tokens(t) for t in texts)
        result: dict[str, Any] = {"object": "list", "data": data, "model": model}
        usage = self._usage({"prompt_tokens": tokens, "total_tokens": tokens})
        if usage is not None:
            result["usage"] = usage
        return result

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(
            status, f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url"
        )

    async def _stats_endpoint(self, request: Request) -> Response:
        keys = request.query_params.get("replayed_keys", "").lower() in ("1", "true", "yes")
        return Response(
            json.dumps(self.stats(replayed_keys=keys)).encode(), media_type="application/json"
        )

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return Response(b'{"reset":true}', media_type="application/json")
