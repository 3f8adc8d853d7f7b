"""Retrieval of reference passages for ``use_rag`` phases.

A project keeps reference documents (character sheets, settings, style guides, category
examples); a phase with ``use_rag`` adds the passages of those documents that are closest
to the item to its prompt, and the passages used are kept with the result so a reviewer
can see what the model was shown.

Closeness is the cosine similarity of embeddings from the project's own model client, not
keyword overlap: the same client, prices and cost ledger as every other call, and a
meaning-based match that a real embedding model provides (the simulator's hashed word
vectors stand in for it in tests and the demo).

Money rules are those of the ledger: every embedding call yields one ``CostEntry`` (kind
``retrieval``) whose ``call_key`` is derived from what is embedded and is also sent as the
call's idempotency key, so indexing the same text again - a retry, a resumed run, a second
upload - is replayed by the service and recorded once. Re-adding a document whose passages
are already stored with the same model makes no call at all.

Scoring is a matrix product over every passage of the project. The project's matrix is
kept in memory per ``ReferenceLibrary`` (dropped by ``add_document``/``remove_document``,
or explicitly with ``invalidate``), so a phase over 10,000 items reads the table once.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.core import sequences
from batch_pipelines.core.costs import (
    DEFAULT_PRICES,
    CostEntry,
    PriceTable,
    Usage,
    reported_or_estimated_usage,
)
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.store.batch_store import utcnow
from batch_pipelines.store.document_ai_tables import reference_passages

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "EMBED_BATCH_SIZE",
    "MAX_QUERY_CHARS",
    "CostSink",
    "Passage",
    "ReferenceLibrary",
    "index_call_key",
    "query_call_key",
    "split_passages",
]

DEFAULT_EMBEDDING_MODEL = "sim-embed"
# Texts per embedding request: well under the APIs' input-count limits (2048 for OpenAI)
# and small enough that one failed request redoes little work.
EMBED_BATCH_SIZE = 64
# A query is cut to this many characters (about 2,000 tokens): embedding models refuse
# inputs over their context (8,191 tokens for OpenAI's), a whole long item would otherwise
# fail its phase, and the opening of an item says best what it is about.
MAX_QUERY_CHARS = 8000

CostSink = Callable[[list[CostEntry]], Awaitable[None] | None]


# ----------------------------------------------------------------------------- passages


@dataclass(frozen=True)
class Passage:
    """One retrieved passage; ``score`` is the cosine similarity to the query (-1..1)."""

    document: str
    passage_index: int
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy, for keeping the passages used with a phase result."""
        return asdict(self)


_PARAGRAPH_SEPARATOR = "\n\n"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# Whitespace after sentence punctuation, possibly behind a closing quote or bracket. Two
# fixed-width look-behinds because Python's look-behind cannot vary in width.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")


def _units(text: str, max_chars: int) -> list[tuple[str, str]]:
    """(separator, piece) pairs, each piece at most ``max_chars`` unless it is one word.

    Paragraphs are kept whole when they fit, otherwise cut into sentences, and a sentence
    that is still too long into words: the coarsest cut that fits keeps related text
    together in one passage. A word is never cut.
    """
    units: list[tuple[str, str]] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        if len(flat) <= max_chars:
            pieces = [flat]
        else:
            pieces = []
            for sentence in _SENTENCE_BREAK.split(flat):
                if len(sentence) <= max_chars:
                    pieces.append(sentence)
                else:
                    pieces.extend(sentence.split())
        for i, piece in enumerate(pieces):
            units.append((_PARAGRAPH_SEPARATOR if i == 0 else " ", piece))
    return units


def _tail_words(text: str, limit: int) -> str:
    """The longest run of whole words ending ``text`` that fits in ``limit`` characters."""
    if limit <= 0:
        return ""
    taken: list[str] = []
    length = -1
    for word in reversed(text.split()):
        if length + 1 + len(word) > limit:
            break
        taken.append(word)
        length += 1 + len(word)
    return " ".join(reversed(taken))


def split_passages(text: str, *, max_chars: int = 800, overlap_chars: int = 100) -> list[str]:
    """Cut ``text`` into passages of at most ``max_chars`` characters for embedding.

    Passages are packed from whole paragraphs, then sentences, then words (see
    ``_units``); whitespace is normalised (paragraphs joined by a blank line, everything
    else by one space). A passage cut inside a paragraph is followed by one that starts with
    up to ``overlap_chars`` of whole words from the end of the previous one, so a fact that
    straddles the cut can still be found from either side; a cut between paragraphs carries
    nothing over, since a paragraph break is already a change of topic and the overlap
    would only blur two unrelated passages. Only a single word longer than ``max_chars`` makes a longer
    passage, on its own: cutting it would lose the word.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError(f"overlap_chars must be >= 0 and < max_chars, got {overlap_chars}")
    passages: list[str] = []
    current = ""
    for separator, piece in _units(text, max_chars):
        if not current:
            current = piece
            continue
        joined = f"{current}{separator}{piece}"
        if len(joined) <= max_chars:
            current = joined
            continue
        passages.append(current)
        overlap = ""
        if separator != _PARAGRAPH_SEPARATOR:
            overlap = _tail_words(
                current, min(overlap_chars, max_chars - len(piece) - len(separator))
            )
        current = f"{overlap}{separator}{piece}" if overlap else piece
    if current:
        passages.append(current)
    return passages


# ----------------------------------------------------------------------------- call keys


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        # Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def index_call_key(project_id: str, document: str, model: str, text: str, request: int) -> str:
    """Ledger key and idempotency key of the ``request``-th embedding call indexing a text.

    Derived from everything the call depends on (project, document, model and the full
    text) and hashed, because project and document names may be longer than the ledger's
    200-character keys. The model is part of it: the same key sent to the service for
    another model would replay the wrong vectors.
    """
    return f"rag-index:{_digest(project_id, document, model, text)[:40]}:{request}"


def query_call_key(batch_id: int | None, project_id: str, model: str, query: str) -> str:
    """Default ledger/idempotency key of embedding a query, when the caller gives none."""
    return f"rag-query:{_digest(str(batch_id), project_id, model, query)[:40]}"


# ----------------------------------------------------------------------------- library


@dataclass(frozen=True)
class _Matrix:
    """Every passage of a project, as unit-length rows for cosine scoring."""

    documents: list[str]
    indexes: list[int]
    texts: list[str]
    vectors: np.ndarray  # (n, dimensions), rows normalised (zero rows stay zero)


class ReferenceLibrary:
    """The reference documents of projects: indexing, listing, removal and retrieval.

    ``batch_id`` is the ledger batch that embedding costs are filed under: the document
    job for retrieval queries; None for indexing a project's documents outside any job
    (those entries belong to the project, not to a batch). Entries go to the sink a call
    passes, else to ``on_cost``; with neither they are dropped - only for callers that
    deliberately do not account (the calls still cost money at a real service).
    """

    def __init__(
        self,
        engine: sa.Engine,
        client: ModelClient,
        *,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        prices: PriceTable = DEFAULT_PRICES,
        on_cost: CostSink | None = None,
        batch_id: int | None = None,
        max_chars: int = 800,
        overlap_chars: int = 100,
        embed_batch_size: int = EMBED_BATCH_SIZE,
        max_query_chars: int = MAX_QUERY_CHARS,
    ) -> None:
        if max_query_chars < 1:
            raise ValueError(f"max_query_chars must be >= 1, got {max_query_chars}")
        if embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {embed_batch_size}")
        # Fail on bad chunking options now, not at the first upload.
        split_passages("", max_chars=max_chars, overlap_chars=overlap_chars)
        # An unpriced model is a configuration error: fail now, not after the first call.
        prices.price_for(embedding_model)
        self.engine = engine
        self.client = client
        self.embedding_model = embedding_model
        self.prices = prices
        self.on_cost = on_cost
        self.batch_id = batch_id
        self.max_chars = max_chars
        self.overlap_chars = overlap_chars
        self.embed_batch_size = embed_batch_size
        self.max_query_chars = max_query_chars
        self._cache: dict[str, _Matrix] = {}
        # Bumped on every change of a project, so a matrix read while a change was being
        # written is not cached over the newer state.
        self._generation: dict[str, int] = {}
        self._epoch = 0  # bumped by invalidate() of every project
        # A thread lock, not an asyncio one: loading runs in worker threads, and one
        # library may serve several event loops over its life (tests, CLI).
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ cache

    def invalidate(self, project_id: str | None = None) -> None:
        """Forget the cached matrix of one project (or all), e.g. after another process
        changed its documents."""
        with self._lock:
            if project_id is None:
                self._cache.clear()
                self._epoch += 1
            else:
                self._bump(project_id)

    def _bump(self, project_id: str) -> None:
        # Caller holds self._lock.
        self._cache.pop(project_id, None)
        self._generation[project_id] = self._generation.get(project_id, 0) + 1

    def _matrix(self, project_id: str) -> _Matrix | None:
        """The project's passages (cached), or None when it has none. Blocking: run it in
        a thread from async code."""
        with self._lock:
            cached = self._cache.get(project_id)
            generation = (self._epoch, self._generation.get(project_id, 0))
        if cached is not None:
            return cached
        rp = reference_passages
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    rp.c.document,
                    rp.c.passage_index,
                    rp.c.text,
                    rp.c.embedding,
                    rp.c.embedding_model,
                )
                .where(rp.c.project_id == project_id)
                .order_by(rp.c.document, rp.c.passage_index)
            ).all()
        if not rows:
            return None
        foreign = sorted({r.document for r in rows if r.embedding_model != self.embedding_model})
        if foreign:
            # Vectors of two models live in different spaces: comparing them would rank
            # passages at random. Re-add those documents with this library's model.
            raise ConfigurationError(
                f"project {project_id!r} has documents embedded with another model than "
                f"{self.embedding_model!r}: {', '.join(foreign)}",
                details={
                    "project_id": project_id,
                    "documents": foreign,
                    "model": self.embedding_model,
                },
            )
        vectors = np.asarray([r.embedding for r in rows], dtype=np.float64)
        if vectors.ndim != 2:
            raise ConfigurationError(
                f"project {project_id!r} has passage embeddings of different lengths",
                details={"project_id": project_id},
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        matrix = _Matrix(
            documents=[r.document for r in rows],
            indexes=[int(r.passage_index) for r in rows],
            texts=[r.text for r in rows],
            vectors=vectors,
        )
        with self._lock:
            if (self._epoch, self._generation.get(project_id, 0)) == generation:
                self._cache[project_id] = matrix
        return matrix

    # ------------------------------------------------------------------ costs

    def _entry(
        self, call_key: str, usage: Usage, *, phase: str | None, item_id: int | None
    ) -> CostEntry:
        return CostEntry.priced(
            call_key=call_key,
            batch_id=self.batch_id,
            model=self.embedding_model,
            usage=usage,
            prices=self.prices,
            phase=phase,
            item_id=str(item_id) if item_id is not None else None,
            kind="retrieval",
        )

    async def _report(self, entries: list[CostEntry], on_cost: CostSink | None = None) -> None:
        sink = on_cost or self.on_cost
        if sink is None or not entries:
            return
        result = sink(entries)
        if inspect.isawaitable(result):
            await result

    async def _embed(
        self,
        texts: list[str],
        call_key: str,
        entries: list[CostEntry],
        *,
        phase: str | None = None,
        item_id: int | None = None,
    ) -> list[list[float]]:
        result = await self.client.embed(
            texts, model=self.embedding_model, idempotency_key=call_key
        )
        # Always priced: whether anyone receives it is decided where it is reported (the
        # call's sink or the library's), not here.
        entries.append(
            self._entry(
                call_key, _usage_of_embedding(result.usage, texts), phase=phase, item_id=item_id
            )
        )
        return result.vectors

    # ------------------------------------------------------------------ documents

    async def add_document(self, project_id: str, document: str, text: str) -> int:
        """Index ``text`` as ``document`` of the project, replacing any earlier version;
        return the number of passages stored.

        Unchanged passages already embedded with this model are kept without any call.
        Otherwise every passage is embedded (``embed_batch_size`` per call) and the old
        rows are swapped for the new ones in one transaction, so a retrieval never sees
        half a document. Costs are reported before returning, also when a call fails
        midway; the retry reuses the keys and is replayed rather than billed again.
        """
        if not project_id or not document:
            raise ValueError("project_id and document must be non-empty")
        chunks = split_passages(text, max_chars=self.max_chars, overlap_chars=self.overlap_chars)
        stored = await asyncio.to_thread(self._stored_passages, project_id, document)
        if stored == [(chunk, self.embedding_model) for chunk in chunks]:
            return len(chunks)
        entries: list[CostEntry] = []
        vectors: list[list[float]] = []
        try:
            for n, batch in enumerate(sequences.chunks(chunks, self.embed_batch_size)):
                key = index_call_key(project_id, document, self.embedding_model, text, n)
                vectors.extend(await self._embed(batch, key, entries))
        finally:
            await self._report(entries)
        await asyncio.to_thread(self._replace, project_id, document, chunks, vectors)
        return len(chunks)

    def _stored_passages(self, project_id: str, document: str) -> list[tuple[str, str]]:
        rp = reference_passages
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rp.c.text, rp.c.embedding_model)
                .where(rp.c.project_id == project_id, rp.c.document == document)
                .order_by(rp.c.passage_index)
            ).all()
        return [(r.text, r.embedding_model) for r in rows]

    def _replace(
        self, project_id: str, document: str, chunks: list[str], vectors: list[list[float]]
    ) -> None:
        rp = reference_passages
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    rp.delete().where(rp.c.project_id == project_id, rp.c.document == document)
                )
                if chunks:
                    conn.execute(
                        rp.insert(),
                        [
                            {
                                "project_id": project_id,
                                "document": document,
                                "passage_index": i,
                                "text": chunk,
                                "embedding": vector,
                                "embedding_model": self.embedding_model,
                                "created_at": now,
                            }
                            for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
                        ],
                    )
        finally:
            with self._lock:
                self._bump(project_id)

    def documents(self, project_id: str) -> list[dict[str, Any]]:
        """The project's documents: ``document``, ``passages`` (count), ``embedding_model``."""
        rp = reference_passages
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rp.c.document, rp.c.embedding_model, sa.func.count().label("passages"))
                .where(rp.c.project_id == project_id)
                .group_by(rp.c.document, rp.c.embedding_model)
                .order_by(rp.c.document, rp.c.embedding_model)
            ).all()
        return [
            {
                "document": r.document,
                "passages": int(r.passages),
                "embedding_model": r.embedding_model,
            }
            for r in rows
        ]

    def remove_document(self, project_id: str, document: str) -> int:
        """Delete a document's passages; return how many were deleted (0 if unknown)."""
        rp = reference_passages
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    rp.delete().where(rp.c.project_id == project_id, rp.c.document == document)
                )
        finally:
            with self._lock:
                self._bump(project_id)
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ retrieval

    async def retrieve(
        self,
        project_id: str,
        query: str,
        *,
        k: int = 3,
        idempotency_key: str | None = None,
        phase: str | None = None,
        item_id: int | None = None,
        on_cost: CostSink | None = None,
    ) -> list[Passage]:
        """The ``k`` passages of the project most similar to ``query``, best first.

        ``on_cost`` (default: the library's) receives the query's ledger entry; a runner
        passes its own, so the entry joins its checkpoint and counts against the budget.

        One embedding call for the query (ledger kind ``retrieval``, filed under ``phase``
        and ``item_id``; its key is ``idempotency_key`` or derived from batch, project,
        model and query). The query is whitespace-normalised and cut to ``max_query_chars``
        at a word boundary. A project without documents, or a blank query, returns []
        without any call. Ties are broken by document name and passage order, so results
        are reproducible.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = _clip(query, self.max_query_chars)
        if not query:
            return []
        matrix = await asyncio.to_thread(self._matrix, project_id)
        if matrix is None:
            return []
        key = idempotency_key or query_call_key(
            self.batch_id, project_id, self.embedding_model, query
        )
        entries: list[CostEntry] = []
        try:
            (vector,) = await self._embed([query], key, entries, phase=phase, item_id=item_id)
        finally:
            await self._report(entries, on_cost)
        return _best(matrix, np.asarray(vector, dtype=np.float64), k, project_id)


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit + 1].rsplit(" ", 1)[0]
    # A first "word" longer than the limit has no boundary to cut at.
    return cut if len(cut) <= limit else flat[:limit]


def _best(matrix: _Matrix, query: np.ndarray, k: int, project_id: str) -> list[Passage]:
    if query.shape != (matrix.vectors.shape[1],):
        raise ConfigurationError(
            f"the query embedding has {query.size} dimensions, the passages of project "
            f"{project_id!r} have {matrix.vectors.shape[1]}; re-add the documents",
            details={"project_id": project_id},
        )
    norm = float(np.linalg.norm(query))
    scores = matrix.vectors @ (query / norm) if norm > 0 else np.zeros(len(matrix.texts))
    n = len(scores)
    if n > k:
        # Everything scoring at least the k-th best, so ties at the cut are ordered below.
        kth = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= kth).tolist()
    else:
        candidates = list(range(n))
    candidates.sort(key=lambda i: (-scores[i], matrix.documents[i], matrix.indexes[i]))
    ranked = candidates[:k]
    return [
        Passage(
            document=matrix.documents[i],
            passage_index=matrix.indexes[i],
            text=matrix.texts[i],
            score=float(scores[i]),
        )
        for i in ranked
    ]


def _usage_of_embedding(raw: Mapping[str, Any] | None, texts: Sequence[str]) -> Usage:
    """Embeddings have no completion: the prompt tokens reported, or estimated and flagged."""
    return reported_or_estimated_usage(raw, "\n".join(texts), "")
