"""Reference documents and retrieval for ``use_rag`` phases, against the model simulator."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.costs import CostEntry, PriceTable
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.document_ai.rag import (
    Passage,
    ReferenceLibrary,
    index_call_key,
    split_passages,
)
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.models import ModelSimulator, count_tokens
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.document_ai_tables import reference_passages

CHARACTERS = """Elinor Vance is the lighthouse keeper's daughter on the island of Carrow. She is \
seventeen, stubborn and quick with knots, and she keeps her late mother's brass compass on a \
cord around her neck. Elinor distrusts the mainland merchants and speaks to the gulls as if \
they were old friends.

Captain Tobias Marlowe commands the schooner Wren, which carries salt and letters between \
Carrow and the harbour town of Lisle. He is a widower in his fifties with a limp from the \
Battle of the Narrows, generous with his crew but ruthless in a bargain. Marlowe owes money \
to half the taverns in Lisle.

Father Anselm runs the small stone chapel above the harbour. He is gentle, nearsighted and \
an amateur astronomer who records comets in a leather ledger. Anselm hides smuggled books in \
the crypt and teaches the village children to read by candlelight."""

SETTINGS = """Carrow is a windswept island of black rock and heather at the mouth of the \
northern sound. Its only village clusters around a harbour that freezes in the hardest \
winters, and the lighthouse on the western cliff has burned every night for two hundred years.

Lisle is a crowded harbour town of narrow lanes, fish markets and customs houses. The \
merchants' guild controls the docks, and the taverns along the quay are where sailors hear \
news, trade debts and hire on for the spring voyages."""

# Small enough that every paragraph above is a passage of its own.
PARAGRAPH_CHARS = 350


def _project() -> str:
    # The PostgreSQL database is shared by the whole session: keep tests apart.
    return f"novel-{uuid.uuid4().hex[:10]}"


def _batch(store: BatchStore) -> int:
    return store.create_batch(
        family="document_ai",
        batch_type="rag test",
        job_configurations=[{"key": "item-1", "data": {"item_id": 1, "content": "x"}}],
    )


def _run(
    sim: ModelSimulator,
    store: BatchStore,
    body: Callable[[ReferenceLibrary], Awaitable[Any]],
    *,
    batch_id: int | None = None,
    recorded: list[CostEntry] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``body`` with a library whose costs go to the store's ledger (and ``recorded``)."""

    async def on_cost(entries: list[CostEntry]) -> None:
        if recorded is not None:
            recorded.extend(entries)
        await asyncio.to_thread(store.record_cost_entries, entries)

    async def go() -> Any:
        async with model_client(sim) as client:
            library = ReferenceLibrary(
                store.engine,
                client,
                on_cost=on_cost,
                batch_id=batch_id if batch_id is not None else _batch(store),
                max_chars=kwargs.pop("max_chars", PARAGRAPH_CHARS),
                **kwargs,
            )
            return await body(library)

    return asyncio.run(go())


async def _index_novel(library: ReferenceLibrary, project: str) -> None:
    await library.add_document(project, "characters.md", CHARACTERS)
    await library.add_document(project, "settings.md", SETTINGS)


# ----------------------------------------------------------------------------- chunking

_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDE.,!?'\"-", min_size=1, max_size=30)
_GAPS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\n \n\n", "\t"])


@st.composite
def _documents(draw: st.DrawFn) -> str:
    words = draw(st.lists(_WORDS, max_size=120))
    parts: list[str] = []
    for word in words:
        parts.append(word)
        parts.append(draw(_GAPS))
    return draw(_GAPS) + "".join(parts)


@settings(max_examples=300, deadline=None)
@given(text=_documents(), max_chars=st.integers(8, 300), overlap_ratio=st.floats(0, 0.9))
def test_every_word_lands_whole_in_a_passage_no_longer_than_the_limit(
    text: str, max_chars: int, overlap_ratio: float
) -> None:
    overlap = min(max_chars - 1, int(max_chars * overlap_ratio))
    passages = split_passages(text, max_chars=max_chars, overlap_chars=overlap)
    words = text.split()
    assert bool(passages) == bool(words)
    passage_words = {w for p in passages for w in p.split()}
    assert all(w in passage_words for w in words)
    for p in passages:
        assert p and p == p.strip()
        assert len(p) <= max_chars or (len(p.split()) == 1 and len(p) > max_chars)
    # Reading the passages in order meets the words in the order of the text.
    flat = iter(w for p in passages for w in p.split())
    assert all(any(w == seen for seen in flat) for w in words)


def test_paragraphs_that_fit_stay_whole_and_are_packed_together() -> None:
    text = "First paragraph, short.\n\n\nSecond   paragraph\nwrapped.\n\nThird one here."
    assert split_passages(text, max_chars=60, overlap_chars=20) == [
        "First paragraph, short.\n\nSecond paragraph wrapped.",
        "Third one here.",
    ]


def test_a_long_paragraph_is_cut_at_sentences_and_the_cut_overlaps() -> None:
    text = (
        "Elinor climbed the stairs. The lamp was cold and the oil was low. "
        "She trimmed the wick and struck a match. The light swept the sound again."
    )
    passages = split_passages(text, max_chars=80, overlap_chars=30)
    assert passages[0] == "Elinor climbed the stairs. The lamp was cold and the oil was low."
    assert passages[1].startswith("was cold and the oil was low. She trimmed")
    assert passages[-1].endswith("The light swept the sound again.")
    assert all(len(p) <= 80 for p in passages)


def test_a_cut_between_paragraphs_carries_nothing_over() -> None:
    passages = split_passages(CHARACTERS, max_chars=PARAGRAPH_CHARS, overlap_chars=100)
    assert [p.split()[0] for p in passages] == ["Elinor", "Captain", "Father"]


def test_a_word_longer_than_the_limit_is_kept_whole_on_its_own() -> None:
    word = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"
    assert split_passages(f"a {word} b c", max_chars=10, overlap_chars=3) == ["a", word, "b c"]


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(0, 0), (10, 10), (10, -1)])
def test_impossible_chunking_options_are_refused(max_chars: int, overlap_chars: int) -> None:
    with pytest.raises(ValueError):
        split_passages("text", max_chars=max_chars, overlap_chars=overlap_chars)


def test_blank_text_has_no_passages() -> None:
    assert split_passages(" \n\n \t") == []


# ----------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "At dawn Elinor Vance climbed the lighthouse stairs, her mother's brass compass "
            "swinging on its cord, and called to the gulls.",
            "Elinor Vance is the lighthouse keeper's daughter",
        ),
        (
            "Captain Tobias Marlowe limped up the gangway of the Wren, counting the salt "
            "barrels and cursing the taverns of Lisle.",
            "Captain Tobias Marlowe commands the schooner Wren",
        ),
        (
            "By candlelight Father Anselm opened his leather ledger in the chapel and recorded "
            "the comet above the harbour.",
            "Father Anselm runs the small stone chapel",
        ),
        (
            "The merchants' guild closed the docks of Lisle, and in the taverns along the quay "
            "the sailors traded debts and news.",
            "Lisle is a crowded harbour town",
        ),
    ],
)
def test_retrieval_returns_the_passage_about_the_query_among_distractors(
    database_url, query, expected
):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()

    async def body(library: ReferenceLibrary) -> list[Passage]:
        await _index_novel(library, project)
        return await library.retrieve(project, query, k=3)

    try:
        passages = _run(sim, store, body)
    finally:
        store.dispose()
    assert len(passages) == 3
    assert passages[0].text.startswith(expected)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert all(-1.0 <= p.score <= 1.0 for p in passages)
    assert passages[0].to_dict() == {
        "document": passages[0].document,
        "passage_index": passages[0].passage_index,
        "text": passages[0].text,
        "score": passages[0].score,
    }


def test_the_query_call_is_one_retrieval_entry_filed_under_the_phase_and_item(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    recorded: list[CostEntry] = []
    batch_id = _batch(store)

    async def body(library: ReferenceLibrary) -> None:
        await _index_novel(library, project)
        recorded.clear()
        await library.retrieve(
            project, "Father Anselm", k=2, idempotency_key="job-7:rag", phase="tag", item_id=7
        )

    try:
        _run(sim, store, body, batch_id=batch_id, recorded=recorded)
        ledger = store.list_cost_entries(batch_id)
    finally:
        store.dispose()
    assert len(recorded) == 1
    entry = recorded[0]
    assert (entry.call_key, entry.kind, entry.phase, entry.item_id, entry.model) == (
        "job-7:rag",
        "retrieval",
        "tag",
        "7",
        "sim-embed",
    )
    assert entry.usage.prompt_tokens > 0 and entry.cost > 0
    assert {e.kind for e in ledger} == {"retrieval"}
    assert len(ledger) == 2 + 1  # one indexing call per document, one query


def test_a_call_s_own_sink_gets_the_entry_even_when_the_library_has_none(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    received: list[CostEntry] = []

    async def go() -> None:
        async with model_client(sim) as client:
            await ReferenceLibrary(store.engine, client, max_chars=PARAGRAPH_CHARS).add_document(
                project, "characters.md", CHARACTERS
            )
            silent = ReferenceLibrary(store.engine, client, max_chars=PARAGRAPH_CHARS)  # no on_cost
            await silent.retrieve(
                project, "Father Anselm", idempotency_key="q-1", on_cost=received.extend
            )

    try:
        asyncio.run(go())
    finally:
        store.dispose()
    assert [(e.call_key, e.kind) for e in received] == [("q-1", "retrieval")]
    assert received[0].cost > 0


def test_an_empty_project_retrieves_nothing_and_calls_nothing(database_url):
    store, sim = BatchStore(database_url), ModelSimulator()
    recorded: list[CostEntry] = []

    async def body(library: ReferenceLibrary) -> list[Passage]:
        return await library.retrieve(_project(), "anything at all")

    try:
        assert _run(sim, store, body, recorded=recorded) == []
    finally:
        store.dispose()
    assert sim.stats()["requests_total"] == 0
    assert recorded == []


def test_a_blank_query_retrieves_nothing_and_calls_nothing(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()

    async def body(library: ReferenceLibrary) -> list[Passage]:
        await library.add_document(project, "settings.md", SETTINGS)
        return await library.retrieve(project, " \n\t ")

    try:
        assert _run(sim, store, body) == []
    finally:
        store.dispose()
    assert sim.stats()["requests_total"] == 1  # the indexing call only


def test_a_long_query_is_cut_at_a_word_boundary_before_embedding(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    recorded: list[CostEntry] = []
    query = "Marlowe sailed the Wren to Lisle again. " * 50

    async def body(library: ReferenceLibrary) -> list[Passage]:
        await library.add_document(project, "characters.md", CHARACTERS)
        recorded.clear()
        return await library.retrieve(project, query, k=1)

    try:
        passages = _run(sim, store, body, recorded=recorded, max_query_chars=100)
    finally:
        store.dispose()
    assert passages[0].text.startswith("Captain Tobias Marlowe")
    # 98 characters, the 17 whole words that fit in 100, were embedded.
    assert recorded[0].usage.prompt_tokens == count_tokens(" ".join(query.split()[:17])) == 23


def test_k_larger_than_the_project_returns_every_passage(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()

    async def body(library: ReferenceLibrary) -> list[Passage]:
        await library.add_document(project, "settings.md", SETTINGS)
        return await library.retrieve(project, "Lisle", k=10)

    try:
        passages = _run(sim, store, body)
    finally:
        store.dispose()
    assert sorted((p.document, p.passage_index) for p in passages) == [
        ("settings.md", 0),
        ("settings.md", 1),
    ]


# ----------------------------------------------------------------------------- documents


def test_re_adding_a_document_replaces_it_and_bills_nothing_new(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    batch_id = _batch(store)
    revised = CHARACTERS.replace("Father Anselm", "Brother Anselm") + (
        "\n\nMiriam Holt keeps the customs house in Lisle. She reads every letter the Wren "
        "carries before it is delivered, and she suspects that Captain Marlowe smuggles more "
        "than salt."
    )

    async def body(library: ReferenceLibrary) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        assert await library.add_document(project, "characters.md", CHARACTERS) == 3
        seen["first"] = len(store.list_cost_entries(batch_id))
        assert await library.add_document(project, "characters.md", revised) == 4
        seen["revised"] = len(store.list_cost_entries(batch_id))
        seen["billed"] = sim.stats()["billed_calls"]
        assert await library.add_document(project, "characters.md", revised) == 4
        seen["again"] = len(store.list_cost_entries(batch_id))
        seen["requests_after_again"] = sim.stats()["requests_total"]
        seen["documents"] = library.documents(project)
        seen["passages"] = await library.retrieve(
            project, "Brother Anselm Father Anselm chapel", k=4
        )
        return seen

    try:
        seen = _run(sim, store, body, batch_id=batch_id)
    finally:
        store.dispose()
    assert seen["first"] == 1 and seen["revised"] == 2
    assert seen["again"] == 2  # unchanged text: no call, no entry
    assert seen["requests_after_again"] == seen["billed"]
    assert seen["documents"] == [
        {"document": "characters.md", "passages": 4, "embedding_model": "sim-embed"}
    ]
    texts = [p.text for p in seen["passages"]]
    assert len(texts) == 4 and not any("Father Anselm" in t for t in texts)
    assert any(t.startswith("Miriam Holt") for t in texts)


def test_indexing_the_same_text_again_is_replayed_by_the_service_and_recorded_once(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    batch_id = _batch(store)

    async def body(library: ReferenceLibrary) -> None:
        await library.add_document(project, "settings.md", SETTINGS)
        # Gone from the table (as after a crash before the rows were written): the same
        # calls are made again, with the same keys.
        assert library.remove_document(project, "settings.md") == 2
        assert library.remove_document(project, "settings.md") == 0
        await library.add_document(project, "settings.md", SETTINGS)

    try:
        _run(sim, store, body, batch_id=batch_id)
        ledger = store.list_cost_entries(batch_id)
    finally:
        store.dispose()
    stats = sim.stats()
    assert (stats["billed_calls"], stats["replays"]) == (1, 1)
    assert [e.call_key for e in ledger] == [
        index_call_key(project, "settings.md", "sim-embed", SETTINGS, 0)
    ]


def test_a_long_document_is_embedded_in_batches_with_one_entry_per_call(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    recorded: list[CostEntry] = []
    text = "\n\n".join(
        f"Log entry {i}: the lamp burned until dawn over the sound." for i in range(7)
    )

    async def body(library: ReferenceLibrary) -> int:
        return await library.add_document(project, "log.md", text)

    try:
        count = _run(
            sim, store, body, recorded=recorded, max_chars=60, overlap_chars=10, embed_batch_size=3
        )
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(reference_passages.c.passage_index, reference_passages.c.embedding)
                .where(reference_passages.c.project_id == project)
                .order_by(reference_passages.c.passage_index)
            ).all()
    finally:
        store.dispose()
    assert count == 7
    assert [r.passage_index for r in rows] == list(range(7))
    assert all(len(r.embedding) == 64 for r in rows)
    assert len(recorded) == sim.stats()["billed_calls"] == math.ceil(7 / 3)
    assert [e.call_key.rsplit(":", 1)[1] for e in recorded] == ["0", "1", "2"]
    assert {e.kind for e in recorded} == {"retrieval"}


def test_costs_of_finished_calls_are_reported_when_a_later_call_fails(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    recorded: list[CostEntry] = []
    text = "\n\n".join(f"Entry {i} of the harbour log." for i in range(4))

    async def body(library: ReferenceLibrary) -> None:
        real_embed, calls = library.client.embed, []

        async def flaky(texts, **kw):
            calls.append(texts)
            if len(calls) == 2:
                raise RuntimeError("connection reset")
            return await real_embed(texts, **kw)

        library.client.embed = flaky  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await library.add_document(project, "log.md", text)
        assert library.documents(project) == []

    try:
        _run(
            sim, store, body, recorded=recorded, max_chars=40, overlap_chars=10, embed_batch_size=2
        )
    finally:
        store.dispose()
    assert len(recorded) == 1 and recorded[0].call_key.endswith(":0")


def test_documents_are_listed_per_project_and_removed_one_by_one(database_url):
    store, sim, project, other = BatchStore(database_url), ModelSimulator(), _project(), _project()

    async def body(library: ReferenceLibrary) -> None:
        await _index_novel(library, project)
        await library.add_document(other, "settings.md", SETTINGS)
        assert [d["document"] for d in library.documents(project)] == [
            "characters.md",
            "settings.md",
        ]
        assert library.remove_document(project, "characters.md") == 3
        assert library.documents(project) == [
            {"document": "settings.md", "passages": 2, "embedding_model": "sim-embed"}
        ]
        assert [d["document"] for d in library.documents(other)] == ["settings.md"]
        passages = await library.retrieve(project, "Elinor Vance", k=5)
        assert {p.document for p in passages} == {"settings.md"}

    try:
        _run(sim, store, body)
    finally:
        store.dispose()


# ----------------------------------------------------------------------------- cache


def test_the_cache_is_invalidated_when_a_document_is_added(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    query = "Miriam Holt reads every letter in the customs house of Lisle."

    async def body(library: ReferenceLibrary) -> tuple[list[Passage], list[Passage]]:
        await library.add_document(project, "settings.md", SETTINGS)
        before = await library.retrieve(project, query, k=1)
        await library.add_document(
            project,
            "customs.md",
            "Miriam Holt keeps the customs house in Lisle and reads every letter.",
        )
        after = await library.retrieve(project, query, k=1)
        return before, after

    try:
        before, after = _run(sim, store, body)
    finally:
        store.dispose()
    assert before[0].document == "settings.md"
    assert after[0].document == "customs.md"


def test_the_passage_matrix_is_read_once_and_reread_after_invalidate(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()

    async def body(library: ReferenceLibrary) -> tuple[int, int, int]:
        await _index_novel(library, project)
        first = await library.retrieve(project, "Captain Marlowe", k=10)
        # Another process deletes the rows behind this library's back.
        with store.engine.begin() as conn:
            conn.execute(
                reference_passages.delete().where(reference_passages.c.project_id == project)
            )
        cached = await library.retrieve(project, "Captain Marlowe", k=10)
        library.invalidate(project)
        return (
            len(first),
            len(cached),
            len(await library.retrieve(project, "Captain Marlowe", k=10)),
        )

    try:
        assert _run(sim, store, body) == (5, 5, 0)
    finally:
        store.dispose()


# ----------------------------------------------------------------------------- configuration


def test_passages_of_another_embedding_model_are_refused_not_mixed(database_url):
    store, sim, project = BatchStore(database_url), ModelSimulator(), _project()
    prices = PriceTable.from_mapping(
        {"sim-embed": ["0.00002", "0"], "other-embed": ["0.00002", "0"]}
    )

    async def body(library: ReferenceLibrary) -> None:
        await library.add_document(project, "settings.md", SETTINGS)
        other = ReferenceLibrary(
            store.engine, library.client, embedding_model="other-embed", prices=prices
        )
        with pytest.raises(ConfigurationError, match="settings.md"):
            await other.retrieve(project, "Lisle")
        # Re-adding with the other model replaces the vectors, and retrieval works again.
        await other.add_document(project, "settings.md", SETTINGS)
        assert len(await other.retrieve(project, "Lisle", k=1)) == 1

    try:
        _run(sim, store, body, prices=prices)
    finally:
        store.dispose()


def test_an_unpriced_embedding_model_is_refused(database_url):
    store = BatchStore(database_url)
    try:
        with pytest.raises(ConfigurationError):
            ReferenceLibrary(store.engine, object(), embedding_model="unpriced-embed")  # type: ignore[arg-type]
    finally:
        store.dispose()


def test_indexing_outside_a_job_is_billed_to_the_project_with_no_batch(database_url):
    store = BatchStore(database_url)
    sim = ModelSimulator()

    async def go():
        async with model_client(sim) as client:
            library = ReferenceLibrary(store.engine, client, on_cost=store.record_cost_entries)
            return await library.add_document("proj-x", "notes.md", "Alpha beta gamma. " * 40)

    import sqlalchemy as sa

    from batch_pipelines.store import schema

    def unbatched() -> list:
        ce = schema.cost_entries
        with store.engine.connect() as conn:
            return conn.execute(
                sa.select(ce.c.call_key, ce.c.kind).where(ce.c.batch_id.is_(None))
            ).all()

    try:
        before = {r.call_key for r in unbatched()}
        assert asyncio.run(go()) >= 1
        new = [r for r in unbatched() if r.call_key not in before]
        assert new and all(r.kind == "retrieval" for r in new)
        assert len(new) == sim.stats()["billed_calls"]
    finally:
        store.dispose()
