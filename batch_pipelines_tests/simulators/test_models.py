"""The model simulator answers like an OpenAI-compatible API, deterministically and from the input."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from batch_pipelines.simulators import models
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.models import ModelSimulator
from batch_pipelines_tests.simulators.helpers import client_for

pytestmark = pytest.mark.anyio

ARTICLE = (
    "The Bank of England raised interest rates on Thursday. "
    "Marie Curie worked in Paris in 1898 with Pierre Curie. "
    "Markets fell 2.5% as investors sold stock and the bank warned about loans. "
    "A new laboratory opened nearby. "
    "Analysts at Goldman Sachs expect the market to recover by 2026 as rates and stock prices settle. "
    "Nothing else happened that day."
)


def chat(system: str, user: str, model: str = "sim-small") -> dict:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


async def ask(sim: ModelSimulator, system: str, user: str) -> str:
    async with client_for(sim.app) as client:
        answer = await client.post("/v1/chat/completions", json=chat(system, user))
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0]["message"]["content"]


async def test_a_chat_completion_has_the_openai_shape_and_usage_from_word_counts():
    async with client_for(ModelSimulator().app) as client:
        answer = await client.post(
            "/v1/chat/completions", json=chat("Summarize the text.", ARTICLE)
        )
    body = answer.json()
    assert body["object"] == "chat.completion" and body["model"] == "sim-small"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["prompt_tokens"] == models.count_tokens(
        "Summarize the text."
    ) + models.count_tokens(ARTICLE)
    assert usage["completion_tokens"] == models.count_tokens(
        body["choices"][0]["message"]["content"]
    )
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_a_summary_is_extractive_shorter_and_deterministic():
    sim = ModelSimulator()
    summary = await ask(sim, "You summarize documents.", ARTICLE)
    sentences = models.split_sentences(ARTICLE)
    picked = models.split_sentences(summary)
    assert 0 < len(picked) < len(sentences)
    assert all(s in sentences for s in picked)
    assert sorted(picked, key=sentences.index) == picked  # original order
    assert await ask(sim, "You summarize documents.", ARTICLE) == summary


async def test_the_task_hint_may_be_the_first_line_of_the_user_message():
    summary = await ask(ModelSimulator(), "You are helpful.", "Summarize this:\n" + ARTICLE)
    assert "Summarize" not in summary
    assert set(models.split_sentences(summary)) <= set(models.split_sentences(ARTICLE))


async def test_entities_are_names_and_numbers_found_in_the_text():
    entities = json.loads(await ask(ModelSimulator(), "Extract the entities.", ARTICLE))
    assert entities[:3] == ["Bank of England", "Marie Curie", "1898"]
    assert {"Pierre Curie", "2.5%", "Goldman Sachs", "2026"} <= set(entities)
    assert all(e in ARTICLE for e in entities)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        (ARTICLE, "finance"),
        ("The patient received a new treatment at the hospital after the diagnosis.", "medicine"),
        ("The court ruled that the contract breached the statute.", "law"),
        ("Nothing here matches any keyword at all.", "other"),
    ],
)
async def test_a_category_comes_from_keyword_counts_over_a_fixed_taxonomy(text: str, category: str):
    assert await ask(ModelSimulator(), "Categorize this document.", text) == category


async def test_cleanup_repairs_hyphenation_whitespace_and_ocr_artifacts():
    dirty = "The wor|d of OCR is fu11 of  ar-\n tifacts ,  and ﬁxes.\nSame paragraph.\n\n\nNew   paragraph."
    cleaned = await ask(ModelSimulator(), "Clean up this OCR text.", dirty)
    assert (
        cleaned
        == "The world of OCR is full of artifacts, and fixes. Same paragraph.\n\nNew paragraph."
    )


async def test_xml_tagging_wraps_paragraphs_and_names_and_escapes_markup():
    tagged = await ask(
        ModelSimulator(), "Add XML tags.", "Marie Curie met Pierre Curie.\n\nA <b> & c."
    )
    assert tagged == (
        "<document><p><name>Marie Curie</name> met <name>Pierre Curie</name>.</p>"
        "<p>A &lt;b&gt; &amp; c.</p></document>"
    )


async def test_translation_is_a_marked_deterministic_pseudo_translation_that_validates_well():
    sim = ModelSimulator()
    translated = await ask(sim, "Translate the text into French.", "Hello world, this is a test.")
    assert translated == "[fr] Hillu wurld, thos os e tist."
    verdict = json.loads(
        await ask(
            sim,
            "Validate the translation.",
            f"Source: Hello world, this is a test.\nTranslation: {translated}",
        )
    )
    assert verdict["score"] == 10


async def test_a_validation_score_is_derived_from_overlap_and_length():
    sim = ModelSimulator()
    faithful = json.loads(
        await ask(
            sim,
            "Score the summary from 1 to 10.",
            f"Input: {ARTICLE}\nOutput: {models.summarize(ARTICLE)}",
        )
    )
    invented = json.loads(
        await ask(
            sim,
            "Score the summary from 1 to 10.",
            f"Input: {ARTICLE}\nOutput: Zebras dance quietly under purple moons tonight.",
        )
    )
    assert faithful["score"] == 10 and "overlap" in faithful["reason"]
    assert 1 <= invented["score"] < 7


async def test_without_a_hint_the_answer_is_a_short_echo_of_the_question():
    assert await ask(
        ModelSimulator(), "You are helpful.", "What is the capital of France? Thanks."
    ) == ("Answer: What is the capital of France?")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_are_deterministic_unit_vectors_and_similar_texts_are_closer():
    sim = ModelSimulator()
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew strongly"]
    async with client_for(sim.app) as client:
        first = (await client.post("/v1/embeddings", json={"model": "emb", "input": texts})).json()
        again = (await client.post("/v1/embeddings", json={"model": "emb", "input": texts})).json()
    assert first["object"] == "list" and first["data"] == again["data"]
    vectors = [d["embedding"] for d in first["data"]]
    assert [d["index"] for d in first["data"]] == [0, 1, 2]
    assert all(len(v) == 64 and abs(cosine(v, v) - 1) < 1e-4 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert (
        first["usage"]["prompt_tokens"]
        == first["usage"]["total_tokens"]
        == sum(models.count_tokens(t) for t in texts)
    )


async def test_base64_embeddings_decode_to_the_float_vectors():
    async with client_for(ModelSimulator().app) as client:
        floats = (
            await client.post(
                "/v1/embeddings", json={"model": "e", "input": "risk", "dimensions": 8}
            )
        ).json()
        packed = (
            await client.post(
                "/v1/embeddings",
                json={"model": "e", "input": "risk", "dimensions": 8, "encoding_format": "base64"},
            )
        ).json()
    decoded = struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)


async def test_usage_can_be_omitted_and_the_omission_is_counted():
    sim = ModelSimulator(omit_usage_rate=1.0)
    async with client_for(sim.app) as client:
        answer = (
            await client.post("/v1/chat/completions", json=chat("Summarize.", ARTICLE))
        ).json()
        embedded = (await client.post("/v1/embeddings", json={"model": "e", "input": "x"})).json()
    assert "usage" not in answer and "usage" not in embedded
    assert sim.stats()["usage_omitted"] == 2 and sim.stats()["billed_calls"] == 2


async def test_an_idempotency_key_replays_the_first_answer_and_bills_it_once():
    sim = ModelSimulator()
    async with client_for(sim.app) as client:
        first = await client.post(
            "/v1/chat/completions",
            json=chat("Summarize.", ARTICLE),
            headers={"Idempotency-Key": "k1"},
        )
        second = await client.post(
            "/v1/chat/completions",
            json=chat("Summarize.", ARTICLE),
            headers={"Idempotency-Key": "k1"},
        )
        other = await client.post(
            "/v1/chat/completions",
            json=chat("Summarize.", ARTICLE),
            headers={"Idempotency-Key": "k2"},
        )
    assert first.json() == second.json()
    assert other.json()["id"] != first.json()["id"]
    stats = sim.stats()
    assert (stats["billed_calls"], stats["replays"], stats["calls_per_key_max"]) == (2, 1, 1)
    assert stats["prompt_tokens_total"] == 2 * first.json()["usage"]["prompt_tokens"]


async def test_with_an_api_key_only_the_matching_bearer_token_is_accepted():
    sim = ModelSimulator(api_key="secret")
    async with (
        client_for(sim.app) as anonymous,
        client_for(sim.app, Authorization="Bearer secret") as ok,
    ):
        refused = await anonymous.post("/v1/chat/completions", json=chat("x", "y"))
        accepted = await ok.post("/v1/chat/completions", json=chat("x", "y"))
    assert refused.status_code == 401
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert accepted.status_code == 200
    async with client_for(ModelSimulator().app, Authorization="Bearer anything") as client:
        assert (await client.post("/v1/chat/completions", json=chat("x", "y"))).status_code == 200


async def test_bad_requests_get_openai_shaped_errors_and_are_not_billed():
    sim = ModelSimulator()
    async with client_for(sim.app) as client:
        no_model = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        no_messages = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        not_json = await client.post("/v1/chat/completions", content=b"{")
        unknown = await client.post("/v1/nothing", json={})
    assert [r.status_code for r in (no_model, no_messages, not_json, unknown)] == [
        400,
        400,
        400,
        404,
    ]
    assert no_model.json()["error"]["param"] == "model"
    assert sim.stats()["billed_calls"] == 0


async def test_rate_limits_carry_retry_after_in_seconds_and_milliseconds_and_bill_nothing():
    sim = ModelSimulator(faults=FaultPlan(rate_limit_rate=1.0, retry_after_seconds=0.5))
    async with client_for(sim.app) as client:
        answer = await client.post(
            "/v1/chat/completions", json=chat("x", "y"), headers={"Idempotency-Key": "k"}
        )
    assert answer.status_code == 429
    assert (answer.headers["retry-after"], answer.headers["retry-after-ms"]) == ("0.5", "500")
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"
    assert sim.stats()["billed_calls"] == 0 and sim.stats()["faults_injected"] == {
        "rate_limited": 1
    }


async def test_an_answer_stops_at_max_tokens_like_the_real_service():
    text = "Elizabeth walked to Netherfield through the fields. " * 40
    request = chat("Clean up this text.", text)
    async with client_for(ModelSimulator().app) as client:
        cut = (await client.post("/v1/chat/completions", json={**request, "max_tokens": 20})).json()
        refused = await client.post("/v1/chat/completions", json={**request, "max_tokens": 0})
    assert cut["usage"]["completion_tokens"] <= 20
    assert models.count_tokens(cut["choices"][0]["message"]["content"]) <= 20
    assert cut["choices"][0]["finish_reason"] == "length"
    assert refused.status_code == 400 and "max_tokens" in refused.text
