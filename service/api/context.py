"""POST /v1/context: the best passages for a query within a token budget, each with its citation.

The passages come from the search pipeline (passages, not documents); their places in the documents
come from the vector store, which keeps each chunk's offsets. Packing is service/search/context.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation

from service.api.disconnect import cancel_on_disconnect
from service.api.fields import collection, text
from service.api.guard import require_api_key
from service.api.search import DegradedStage, HitEvidence, described, hit_evidence
from service.auth.access import check_collection
from service.auth.billing import billed
from service.auth.keys import ApiKey, Keys
from service.auth.scopes import SEARCH
from service.backends.qdrant import QdrantIndex
from service.errors import ClientGone, FathomError, InvalidRequest
from service.metrics import Metrics
from service.runtime import Runtime
from service.search.context import Located, Passage, pack, pages
from service.search.filters import parse_filter
from service.search.models import Chunk
from service.search.pipeline import SearchQuery
from service.search.results import SearchHit, SearchOutcome
from service.settings import Settings

SEARCH_UNITS_PER_CONTEXT = 1
# Metadata keys a citation reads its link from, first found wins.
URL_KEYS = ("url", "source_url", "link")


class ContextRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, text("What to find passages for.")]
    collection: Annotated[str, collection("The collection to search.")]
    # budget() checks both ends, its 400 naming the configured maximum; the schema states the minimum.
    max_tokens: (
        Annotated[
            int,
            msgspec.Meta(
                description="Tokens the passages may fill: 1 to [context] max_tokens.",
                extra_json_schema={"extra": {"minimum": 1}},
            ),
        ]
        | None
    ) = None
    filter: dict[str, Any] | None = None
    min_score: (
        Annotated[float, described("Drop passages whose rerank score is below this.", ge=0, le=1)] | None
    ) = None
    tokenizer: str | None = None


class Citation(msgspec.Struct):
    """Where the passage is: `text == document_text[start:end]`; `chunks` are the positions merged."""

    id: str
    title: str
    url: str | None
    chunks: list[int]
    start: int | None
    end: int | None
    page: int | None
    page_end: int | None
    metadata: dict[str, Any]


class ContextPassage(msgspec.Struct):
    text: str
    tokens: int
    truncated: bool
    score: float
    citation: Citation
    evidence: HitEvidence


class ContextResponse(msgspec.Struct):
    id: str
    collection: str
    tokenizer: str
    max_tokens: int
    total_tokens: int
    passages: list[ContextPassage]
    timings: dict[str, float]
    degraded: list[DegradedStage]


def budget(query: ContextRequest, settings: Settings) -> int:
    limits = settings.context
    max_tokens = limits.default_max_tokens if query.max_tokens is None else query.max_tokens
    if not 1 <= max_tokens <= limits.max_tokens:
        raise InvalidRequest(f"max_tokens must be between 1 and {limits.max_tokens}, got {max_tokens}")
    return max_tokens


async def locate(
    vectors: QdrantIndex, collection: str, hits: Sequence[SearchHit]
) -> tuple[list[Located], str]:
    """Each hit with its stored position and offsets; without them (and why) when the store cannot say."""
    try:
        stored = await vectors.chunks(collection, [hit.chunk_id for hit in hits])
    except FathomError as exc:
        return [Located(hit, hit.text) for hit in hits], f"chunk offsets are unavailable: {exc}"
    by_id: dict[str, Chunk] = {chunk.id: chunk for chunk in stored}
    return [located(hit, by_id.get(hit.chunk_id)) for hit in hits], ""


def located(hit: SearchHit, chunk: Chunk | None) -> Located:
    if chunk is None:
        return Located(hit, hit.text)
    # Offsets describe the stored text; chunks written before offsets were kept have none.
    start = (
        chunk.start if chunk.end is not None and chunk.end - (chunk.start or 0) == len(chunk.text) else None
    )
    return Located(hit, chunk.text, chunk.position, start)


def citation(passage: Passage) -> Citation:
    metadata = passage.best.metadata
    url = next((metadata[key] for key in URL_KEYS if isinstance(metadata.get(key), str)), None)
    first, last = pages(passage)
    return Citation(
        id=passage.best.id,
        title=passage.best.title,
        url=url,
        chunks=passage.positions,
        start=passage.start,
        end=passage.end,
        page=first,
        page_end=last,
        metadata={k: v for k, v in metadata.items() if k not in ("page", "page_end")},
    )


def to_passage(passage: Passage) -> ContextPassage:
    return ContextPassage(
        text=passage.text,
        tokens=passage.tokens,
        truncated=passage.truncated,
        score=passage.best.score,
        citation=citation(passage),
        evidence=hit_evidence(passage.best),
    )


async def gather_context(runtime: Runtime, query: ContextRequest) -> ContextResponse:
    """Search for passages, locate them, pack them into the budget: for /v1/context and the MCP tool."""
    if runtime.pipeline is None or runtime.stack is None or runtime.token_counters is None:
        raise runtime.unavailable("search is")
    max_tokens = budget(query, runtime.settings)
    counter = runtime.token_counters.get(query.tokenizer)
    rerank = runtime.settings.search.rerank
    outcome: SearchOutcome = await runtime.pipeline.search(
        SearchQuery(
            query=query.query,
            collection=query.collection,
            top_k=runtime.settings.search.max_top_k,
            filter=parse_filter(query.filter),
            min_score=query.min_score,
            passages=True,
            # One rerank block: the passages a prompt takes come from the top, and a page of 100 would
            # otherwise score the whole depth for every request (see SearchPipeline's blocks).
            rerank_depth=min(rerank.depth, rerank.block),
        )
    )
    started = time.perf_counter()
    ranked, problem = await locate(runtime.stack.vectors, query.collection, outcome.hits)
    passages = pack(ranked, max_tokens, counter.count, counter.cut)
    degraded = [DegradedStage(d.stage, d.reason) for d in outcome.degraded]
    if problem:
        degraded.append(DegradedStage("citations", problem))
    return ContextResponse(
        id=str(uuid.uuid4()),
        collection=query.collection,
        tokenizer=query.tokenizer or runtime.token_counters.default_name,
        max_tokens=max_tokens,
        total_tokens=sum(p.tokens for p in passages),
        passages=[to_passage(p) for p in passages],
        timings={
            **{stage: round(ms, 3) for stage, ms in outcome.timings.items()},
            "context": round((time.perf_counter() - started) * 1000, 3),
        },
        degraded=degraded,
    )


@post(
    "/v1/context",
    guards=[require_api_key],
    opt={"scope": SEARCH},
    status_code=200,
    summary="Passages for a prompt, within a token budget",
    tags=["search"],
)
async def context(
    request: Request[Any, Any, Any],
    data: JSONBody[ContextRequest],
    *,
    runtime: NamedDependency[Runtime],
    keys: NamedDependency[SkipValidation[Keys]],
    metrics: NamedDependency[Metrics],
    api_key: NamedDependency[ApiKey | None],
) -> ContextResponse:
    check_collection(api_key, data.collection)
    async with billed(keys, api_key, SEARCH_UNITS_PER_CONTEXT):
        try:
            # As /v1/search: the work stops when the client hangs up.
            response = await cancel_on_disconnect(request, gather_context(runtime, data))
        except ClientGone:
            metrics.searches_cancelled.inc()
            raise
    for degraded in response.degraded:
        metrics.degraded.labels(degraded.stage).inc()
    return response
