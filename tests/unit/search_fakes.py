"""In-memory fakes of the search pipeline's parts, for unit tests of the pipeline and the HTTP layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.search.models import Chunk, Filter, Hit
from service.search.typos import EXACT, Matching


def hit(chunk_id: str, score: float, snippet: str | None = None) -> Hit:
    doc_id = chunk_id.partition("#")[0]
    return Hit(chunk_id, doc_id, score, f"Title {doc_id}", f"text {chunk_id}", snippet, {"doc": doc_id})


# Fused (k=60): d2#0 1/62+1/61 > d1#0 1/61+1/63 > d4#0 1/62 > d3#0 1/63 > d1#1 1/64.
LEXICAL_HITS = [hit("d1#0", 9.0), hit("d2#0", 7.0), hit("d3#0", 5.0), hit("d1#1", 4.0)]
VECTOR_HITS = [hit("d2#0", 0.9), hit("d4#0", 0.8), hit("d1#0", 0.7)]
FUSED_DOCS = ["d2", "d1", "d4", "d3"]


@dataclass
class FakeLexical:
    hits: list[Hit] = field(default_factory=lambda: list(LEXICAL_HITS))
    delay: float = 0.0
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def search(
        self,
        collection: str,
        text: str,
        *,
        limit: int,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> list[Hit]:
        self.calls.append(
            {"collection": collection, "text": text, "limit": limit, "filter": filter, "matching": matching}
        )
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return self.hits[:limit]


@dataclass
class FakeVectors:
    hits: list[Hit] = field(default_factory=lambda: list(VECTOR_HITS))
    delay: float = 0.0
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def search(
        self, collection: str, vector: Sequence[float], *, limit: int, filter: Filter | None = None
    ) -> list[Hit]:
        self.calls.append({"collection": collection, "vector": vector, "limit": limit, "filter": filter})
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return self.hits[:limit]

    async def chunks(self, collection: str, chunk_ids: Sequence[str]) -> list[Chunk]:
        return []  # no offsets stored: passages are cited without them

    async def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        return []


@dataclass
class FakeCatalog:
    """The journal's list of collections: name -> state."""

    states: dict[str, str] = field(default_factory=dict)
    documents: int = 0

    def collections(self) -> dict[str, str]:
        return dict(self.states)

    def document_count(self, collection: str) -> int:
        return self.documents


@dataclass
class FakeEmbedder:
    delay: float = 0.0
    error: Exception | None = None
    queries: list[str] = field(default_factory=list)

    @property
    def dimensions(self) -> int:
        return 3

    async def embed_query(self, text: str) -> list[float]:
        self.queries.append(text)
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return [0.1, 0.2, 0.3]

    async def embed_passages(
        self, texts: Sequence[str], on_embedded: Callable[[int], object] | None = None
    ) -> list[list[float]]:
        return [[0.1, 0.2, 0.3] for _ in texts]


@dataclass
class FakeReranker:
    """Scores a passage by the chunk id it ends with; unknown passages score 0."""

    by_chunk: dict[str, float] = field(default_factory=dict)
    delay: float = 0.0
    error: Exception | None = None
    drop_one: bool = False
    affordable: int | None = None  # within a budget, how many passages fit
    calls: list[list[str]] = field(default_factory=list)
    budgets: list[float | None] = field(default_factory=list)

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        self.calls.append(list(passages))
        self.budgets.append(budget_ms)
        if budget_ms is not None and self.affordable is not None:
            passages = passages[: self.affordable]
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        scores = [self._score(passage) for passage in passages]
        return scores[1:] if self.drop_one else scores

    def _score(self, passage: str) -> float:
        return next((s for chunk, s in self.by_chunk.items() if passage.endswith(chunk)), 0.0)
