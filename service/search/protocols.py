"""The smallest interface each search role needs; adapters in service/backends implement them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from service.search.facets import FacetCounts
from service.search.models import Chunk, Filter, Hit
from service.search.typos import EXACT, Matching


class LexicalIndex(Protocol):
    async def search(
        self,
        collection: str,
        text: str,
        *,
        limit: int,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> list[Hit]:
        """Best `limit` passages for `text` by BM25, best first; `matching` adds typo and prefix matches."""
        ...

    async def facets(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        *,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> FacetCounts:
        """Documents `text` matches by BM25 after the filter, and document counts per value of `fields`;
        a field the filter names is counted without its own condition (disjunctive: search/facets.py)."""
        ...


class VectorIndex(Protocol):
    async def search(
        self, collection: str, vector: Sequence[float], *, limit: int, filter: Filter | None = None
    ) -> list[Hit]:
        """Nearest `limit` passages by cosine similarity, best first."""
        ...


class ChunkReader(Protocol):
    """Stored chunks read back by id, with their text, position and offsets (the vector store keeps them)."""

    async def chunks(self, collection: str, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks among `chunk_ids`; ids it does not hold are left out."""
        ...

    async def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        """Every chunk of one document in position order; [] when the collection does not hold it."""
        ...


class CollectionCatalog(Protocol):
    """The collections that exist, as the ingest journal records them."""

    def collections(self) -> dict[str, str]:
        """Name -> state ('ready', or 'dropping' while its stores are being dropped)."""
        ...

    def document_count(self, collection: str) -> int: ...


class Embedder(Protocol):
    @property
    def dimensions(self) -> int: ...

    async def embed_query(self, text: str) -> list[float]:
        """One normalised vector for a query."""
        ...

    async def embed_passages(
        self, texts: Sequence[str], on_embedded: Callable[[int], object] | None = None
    ) -> list[list[float]]:
        """One normalised vector per passage, in the order given.

        `on_embedded(index)` is called as each text's vector arrives (an indexer's progress bar),
        possibly from the embedder's inference thread.
        """
        ...


class Reranker(Protocol):
    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        """One relevance score in [0, 1] per passage, in the order given.

        With `budget_ms`, a reranker that knows its own speed may score only the first passages, as
        many as fit in the budget: the answer is then a prefix of the passages' scores.
        """
        ...


class PassageStore(Protocol):
    """The write side both stores share, so the indexer treats them alike."""

    async def ensure_collection(self, collection: str) -> None: ...

    async def drop_collection(self, collection: str) -> None: ...

    async def collection_exists(self, collection: str) -> bool: ...

    async def delete_documents(self, collection: str, doc_ids: Sequence[str]) -> None: ...

    async def count_chunks(self, collection: str) -> int: ...

    async def chunk_counts(self, collection: str) -> dict[str, int]:
        """Chunks held per document id, read in bulk, to check the store against the ingest journal."""
        ...

    async def close(self) -> None:
        """Release connections, files and locks."""
        ...


class LexicalStore(LexicalIndex, PassageStore, Protocol):
    async def upsert(self, collection: str, chunks: Sequence[Chunk]) -> None: ...


class VectorStore(VectorIndex, PassageStore, Protocol):
    async def upsert(
        self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> None: ...
