"""SearchService: the one owner of search at request time, for the HTTP API and the MCP tools alike.

The composition root (service/runtime.py) builds one per process and hands it what opening search
built; the HTTP routes and the MCP tools are thin adapters over it. It answers searches (choosing the
reranker a request names), packs cited passages into a token budget, reads whole documents back, lists
the collections a key reaches and names the nearest one to a misspelt name. Until search has opened
(it opens in the background on the server), or when it could not, each of these is a 503 saying why.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.auth.keys import ApiKey
from service.backends.embedder import TextEmbedder
from service.backends.stack import SearchStack
from service.backends.token_budget import TokenCounters
from service.errors import BackendUnavailable, FathomError, InvalidRequest, NotFound
from service.ingest.writer import IngestWriter
from service.rerank.local_reranker import EngineReranker
from service.rerank.registry import ModelRegistry
from service.rerank.score_cache import CachedReranker, ScoreCache
from service.search.answers import (
    ContextResponse,
    DegradedStage,
    DocumentText,
    degraded_stages,
    to_passage,
    url_of,
    without_pages,
)
from service.search.collections import nearest_name
from service.search.context import Located, located, pack, reassembled
from service.search.filters import parse_filter
from service.search.models import Chunk
from service.search.pipeline import SearchPipeline, SearchQuery
from service.search.protocols import ChunkReader, CollectionCatalog, Reranker
from service.search.redact import for_clients, without_urls
from service.search.results import SearchHit, SearchOutcome
from service.settings import Settings

# A context request (HTTP or MCP) is billed as one search.
SEARCH_UNITS_PER_CONTEXT = 1


@dataclass(frozen=True, slots=True)
class SearchParts:
    """What opening search built. The last three are None only where a runtime is built without
    them (the HTTP layer's tests on fakes): the routes needing them answer 503, as before opening."""

    pipeline: SearchPipeline
    # The journal's list of collections: the ones a search may name.
    catalog: CollectionCatalog
    # The vector store, which keeps each chunk's text, position and offsets.
    chunks: ChunkReader
    counters: TokenCounters | None = None
    stack: SearchStack | None = None
    # The write path on the same stores, for the collection routes and the indexer.
    writer: IngestWriter | None = None


@dataclass(frozen=True, slots=True)
class ContextQuery:
    """A request for passages: /v1/context's body, or the MCP `search` tool's arguments."""

    query: str
    collection: str
    max_tokens: int | None = None
    filter: dict[str, Any] | None = None
    min_score: float | None = None
    tokenizer: str | None = None


class SearchService:
    def __init__(
        self,
        settings: Settings,
        models: ModelRegistry | None = None,
        *,
        parts: SearchParts | None = None,
        error: str | None = None,
        scores: ScoreCache | None = None,
    ) -> None:
        self.settings = settings
        self._models = models
        # Search rerank scores by (model, query, passage), shared by every model's reranker.
        self._scores = scores if scores is not None else ScoreCache(0)
        self._parts = parts
        # Why search could not open (or that it is switched off); None while it opens or once open.
        self._error = error
        self._opening: asyncio.Task[None] | None = None

    # Opening, driven by the composition root.

    def open(self, parts: SearchParts) -> None:
        self._parts, self._error = parts, None

    def fail(self, reason: str) -> None:
        self._error = reason

    def opening_in(self, task: asyncio.Task[None]) -> None:
        """The background task opening search, which `wait_opened` waits for."""
        self._opening = task

    async def wait_opened(self) -> None:
        """Until search (the stores, the embedder, the journal) has opened or failed."""
        if self._opening is not None:
            await asyncio.shield(self._opening)

    def readiness(self) -> str:
        """For /readyz: "ready", "disabled", "starting" or "failed: <why>"."""
        if self._parts is not None:
            return "ready"
        if not self.settings.search.enabled:
            return "disabled"
        # Readiness is for operators: a damaged file's path stays (they restore it), URLs do not.
        return f"failed: {without_urls(self._error)}" if self._error else "starting"

    def unavailable(self, what: str) -> BackendUnavailable:
        """The 503 of a part that is not open: why, without URLs or server paths."""
        return BackendUnavailable(f"{what} not available: {for_clients(self._error or 'still starting')}")

    def opened(self, what: str = "search is") -> SearchParts:
        if self._parts is None:
            raise self.unavailable(what)
        return self._parts

    # The parts other routes and commands use, each a 503 until open.

    @property
    def pipeline(self) -> SearchPipeline:
        return self.opened().pipeline

    @property
    def stack(self) -> SearchStack:
        stack = self.opened().stack
        if stack is None:
            raise self.unavailable("search is")
        return stack

    @property
    def writer(self) -> IngestWriter:
        writer = self.opened("collections are").writer
        if writer is None:
            raise self.unavailable("collections are")
        return writer

    @property
    def embedder(self) -> TextEmbedder:
        stack = self.opened("embeddings are").stack
        if stack is None:
            raise self.unavailable("embeddings are")
        return stack.embedder

    # Request-time work.

    def reranker_for(self, model: str | None) -> Reranker | None:
        """The reranker a search asks for by model id; None: the pipeline's own (the configured one)."""
        if model is None:
            return None
        if self.settings.search.rerank.url:
            raise InvalidRequest(
                "rerank.model cannot be chosen per request: this server reranks through a remote URL"
            )
        states = self._models.states if self._models is not None else {}
        if self._models is None or model not in states:
            available = ", ".join(sorted(states)) or "none"
            raise InvalidRequest(f"unknown rerank model {model!r}; available models: {available}")
        return self.cached(EngineReranker(self._models, model), model)

    def cached(self, reranker: Reranker, model: str) -> Reranker:
        """`reranker` answering from the score cache what it holds for `model`."""
        return CachedReranker(reranker, model, self._scores)

    async def search(self, query: SearchQuery, reranker: Reranker | None = None) -> SearchOutcome:
        """Retrieve, fuse and rerank, with a reranker of `reranker_for` (None: the configured one)."""
        return await self.pipeline.search(query, reranker=reranker)

    async def context(self, query: ContextQuery) -> ContextResponse:
        """The best passages for a query within a token budget, each located in its document and cited."""
        parts = self.opened()
        if parts.counters is None:
            raise self.unavailable("search is")
        max_tokens = self.budget(query.max_tokens)
        counter = parts.counters.get(query.tokenizer)
        outcome = await parts.pipeline.search(
            SearchQuery(
                query=query.query,
                collection=query.collection,
                top_k=self.settings.search.max_top_k,
                filter=parse_filter(query.filter),
                min_score=query.min_score,
                passages=True,
                # One rerank block: the passages a prompt takes come from the top, and a page of 100
                # would otherwise score the whole depth for every request (see SearchPipeline's blocks).
                rerank_depth=min(self.settings.search.rerank.depth, self.settings.search.rerank.block),
            )
        )
        started = time.perf_counter()
        ranked, problem = await locate(parts.chunks, query.collection, outcome.hits)
        passages = pack(ranked, max_tokens, counter.count, counter.cut)
        degraded = degraded_stages(outcome.degraded)
        if problem:
            degraded.append(DegradedStage("citations", problem))
        return ContextResponse(
            id=str(uuid.uuid4()),
            collection=query.collection,
            tokenizer=query.tokenizer or parts.counters.default_name,
            max_tokens=max_tokens,
            total_tokens=sum(p.tokens for p in passages),
            passages=[to_passage(p) for p in passages],
            timings={
                **{stage: round(ms, 3) for stage, ms in outcome.timings.items()},
                "context": round((time.perf_counter() - started) * 1000, 3),
            },
            degraded=degraded,
        )

    def budget(self, max_tokens: int | None) -> int:
        limits = self.settings.context
        max_tokens = limits.default_max_tokens if max_tokens is None else max_tokens
        if not 1 <= max_tokens <= limits.max_tokens:
            raise InvalidRequest(f"max_tokens must be between 1 and {limits.max_tokens}, got {max_tokens}")
        return max_tokens

    async def get_document(self, collection: str, doc_id: str, max_chars: int) -> DocumentText:
        """A whole document by id, reassembled from its chunks; NotFound when the collection lacks it."""
        chunks = await self.opened().chunks.document_chunks(collection, doc_id)
        if not chunks:
            raise NotFound(f'collection "{collection}" has no document {doc_id!r}')
        text = reassembled(chunks)
        metadata = without_pages(chunks[0].metadata)
        return DocumentText(
            id=doc_id,
            title=chunks[0].title,
            url=url_of(metadata),
            metadata=metadata,
            text=text[:max_chars],
            truncated=len(text) > max_chars,
            chars=len(text),
        )

    def collections(self, key: ApiKey | None, what: str = "search is") -> list[str]:
        """The collections ready to search that `key` reaches (every one without a key)."""
        catalog = self.opened(what).catalog
        ready = [name for name, state in catalog.collections().items() if state == "ready"]
        return [name for name in ready if key is None or key.reaches(name)]

    def document_count(self, collection: str) -> int:
        return self.opened("collections are").catalog.document_count(collection)

    def nearest_collection(self, name: str) -> str | None:
        """For a collection this server does not know: the existing name nearest to it, if any is close."""
        if self._parts is None:
            return None
        known = [known for known, state in self._parts.catalog.collections().items() if state == "ready"]
        return None if name in known else nearest_name(name, known)


async def locate(
    chunks: ChunkReader, collection: str, hits: Sequence[SearchHit]
) -> tuple[list[Located], str]:
    """Each hit with its stored position and offsets; without them (and why) when the store cannot say."""
    try:
        stored = await chunks.chunks(collection, [hit.chunk_id for hit in hits])
    except FathomError as exc:
        return [Located(hit, hit.text) for hit in hits], f"chunk offsets are unavailable: {exc}"
    by_id: dict[str, Chunk] = {chunk.id: chunk for chunk in stored}
    return [located(hit, by_id.get(hit.chunk_id)) for hit in hits], ""
