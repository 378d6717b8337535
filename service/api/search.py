"""POST /v1/search: hybrid retrieval, fusion and rerank, with each hit's evidence and per-stage timings."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation

from service.api.events import record_search
from service.api.fields import Cosine, collection, text
from service.api.guard import require_api_key
from service.auth.access import check_collection
from service.auth.billing import billed
from service.auth.keys import ApiKey, Keys
from service.auth.public import check_public_rerank
from service.auth.scopes import SEARCH
from service.disconnect import cancel_on_disconnect
from service.errors import ClientGone
from service.metrics import Metrics
from service.search.answers import DegradedStage, HitEvidence, degraded_stages, hit_evidence
from service.search.facets import MAX_FACET_FIELDS, FacetCounts, parse_facet_fields
from service.search.filters import FIELD_NAME_PATTERN, parse_filter
from service.search.pipeline import SearchQuery
from service.search.results import SearchHit, SearchOutcome
from service.search_service import SearchService

SEARCH_UNITS_PER_QUERY = 1


def described(description: str, ge: float | None = None, le: float | None = None) -> msgspec.Meta:
    """A field's description and bounds, for the OpenAPI schema and for parsing alike."""
    # Litestar leaves a lower bound of 0 out of the schema (it tests the bound's truth): stated again.
    extra = {"extra": {"minimum": ge}} if ge == 0 else None
    return msgspec.Meta(description=description, ge=ge, le=le, extra_json_schema=extra)


class Weights(msgspec.Struct, forbid_unknown_fields=True):
    lexical: Annotated[float, described("Weight of the BM25 list in the fusion.", ge=0)] = 1.0
    vector: Annotated[float, described("Weight of the vector list in the fusion.", ge=0)] = 1.0


class FusionOptions(msgspec.Struct, forbid_unknown_fields=True):
    k: Annotated[int, described("RRF's k (default [search] rrf_k, 60).", ge=1)] | None = None
    weights: Weights | None = None


class RerankOptions(msgspec.Struct, forbid_unknown_fields=True):
    enabled: Annotated[bool, described("Rerank the fused head (default [search.rerank] enabled).")] | None = (
        None
    )
    depth: Annotated[int, described("How many fused hits to rerank; 0: none.", ge=0)] | None = None
    model: (
        Annotated[str, msgspec.Meta(min_length=1, description="A rerank model id of GET /v1/models.")] | None
    ) = None
    budget_ms: (
        Annotated[
            float,
            described(
                "Milliseconds the rerank stage may take: as many of the first `depth` fused hits as fit are"
                " reranked, the rest keep their fused order (default [search.rerank] budget_ms; 0: none).",
                ge=0,
                le=60_000,
            ),
        ]
        | None
    ) = None


class SearchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Unknown fields are refused: a misspelt option silently ignored would be worse than a 400."""

    query: Annotated[str, text("What to search for.")]
    collection: Annotated[str, collection("The collection to search.")]
    top_k: (
        Annotated[int, described("Hits to return: 1 to [search] max_top_k (100 by default).", ge=1)] | None
    ) = None
    filter: Annotated[
        dict[str, Any] | None,
        described('Metadata filter: {"f": value}, {"f": {"in": [...]}} or {"f": {"gte": x, "lt": y}}.'),
    ] = None
    candidates: (
        Annotated[int, described("Depth per retriever: 1 to [search] max_candidates (1000).", ge=1)] | None
    ) = None
    fusion: FusionOptions | None = None
    rerank: RerankOptions | None = None
    min_score: (
        Annotated[float, described("Drop hits whose rerank score is below this (0 to 1).", ge=0, le=1)] | None
    ) = None
    passages: Annotated[bool, described("One hit per matching passage instead of per document.")] = False
    facets: (
        Annotated[
            list[str],
            msgspec.Meta(
                max_length=MAX_FACET_FIELDS,
                description=f"Metadata fields to count values of (at most {MAX_FACET_FIELDS}); [] counts only"
                " the total.",
                # Stated for the document only: service.search.facets checks the names as parsed, with a
                # message that names the field sent.
                extra_json_schema={"extra": {"items": {"type": "string", "pattern": FIELD_NAME_PATTERN}}},
            ),
        ]
        | None
    ) = None
    cursor: (
        Annotated[
            str, msgspec.Meta(min_length=1, description="The previous response's cursor, for the next page.")
        ]
        | None
    ) = None
    typo_tolerance: (
        Annotated[
            bool,
            described(
                "Query words the collection does not hold also match within 1 typo (5 to 8 letters) or 2"
                " (9 or more; Elasticsearch keeps the first letter), by default ([search] typo_tolerance)."
            ),
        ]
        | None
    ) = None
    prefix: Annotated[
        bool,
        described(
            "The last word is still being typed: it also matches words it begins (3 letters or more,"
            " at most 50 of them), as a search-as-you-type box needs."
        ),
    ] = False
    vector_floor: (
        Annotated[
            Cosine | Literal["auto", "off"],
            msgspec.Meta(
                description="Vector hits the lexical side did not find count only from this cosine up:"
                ' "auto" (the collection\'s measured floor: how close random-letter queries get), a number'
                ' from -1 to 1, or "off" (default [search] vector_floor, or [search.vector_floors]).'
            ),
        ]
        | None
    ) = None


class SearchResult(msgspec.Struct):
    id: str
    chunk_id: str
    title: str
    snippet: str
    metadata: dict[str, Any]
    score: float
    evidence: HitEvidence


class FacetBucket(msgspec.Struct):
    value: str | int | float | bool
    count: int


class SearchResponse(msgspec.Struct):
    id: str
    collection: str
    hits: list[SearchResult]
    timings: dict[str, float]
    degraded: list[DegradedStage]
    # The leading hits of the whole list in rerank order, through this page's blocks (0: not reranked).
    reranked: int = 0
    # Hits the whole list holds, every page together (at most [search] max_depth): the result count a
    # search box shows. `total` counts something else: lexical matches, with `facets`.
    found: int = 0
    # Send it back as `cursor` for the next page; null when there is none.
    cursor: str | None = None
    # With `facets` in the request: documents the query matches lexically after the filter, and
    # document counts per value of each field; null when not asked for, or when counting failed.
    total: int | None = None
    facets: dict[str, list[FacetBucket]] | None = None


def to_query(data: SearchRequest) -> SearchQuery:
    fusion = data.fusion or FusionOptions()
    weights = fusion.weights or Weights()
    rerank = data.rerank or RerankOptions()
    return SearchQuery(
        query=data.query,
        collection=data.collection,
        top_k=data.top_k,
        filter=parse_filter(data.filter),
        candidates=data.candidates,
        rrf_k=fusion.k,
        weights=(weights.lexical, weights.vector),
        rerank_enabled=rerank.enabled,
        rerank_depth=rerank.depth,
        rerank_budget_ms=rerank.budget_ms,
        min_score=data.min_score,
        passages=data.passages,
        facets=parse_facet_fields(data.facets),
        cursor=data.cursor,
        typo_tolerance=data.typo_tolerance,
        prefix=data.prefix,
        vector_floor=data.vector_floor,
    )


def to_result(hit: SearchHit) -> SearchResult:
    return SearchResult(
        id=hit.id,
        chunk_id=hit.chunk_id,
        title=hit.title,
        snippet=hit.snippet,
        metadata=hit.metadata,
        score=hit.score,
        evidence=hit_evidence(hit),
    )


def facet_buckets(counts: FacetCounts | None) -> dict[str, list[FacetBucket]] | None:
    if counts is None:
        return None
    return {name: [FacetBucket(v.value, v.count) for v in values] for name, values in counts.fields.items()}


def response_of(collection: str, outcome: SearchOutcome) -> SearchResponse:
    return SearchResponse(
        id=str(uuid.uuid4()),
        collection=collection,
        hits=[to_result(hit) for hit in outcome.hits],
        timings={stage: round(ms, 3) for stage, ms in outcome.timings.items()},
        degraded=degraded_stages(outcome.degraded),
        reranked=outcome.reranked,
        found=outcome.found,
        cursor=outcome.cursor,
        total=None if outcome.facets is None else outcome.facets.total,
        facets=facet_buckets(outcome.facets),
    )


@post(
    "/v1/search",
    guards=[require_api_key],
    # The one route a public key may call (service/auth/public.py).
    opt={"scope": SEARCH, "public": True},
    status_code=200,
    summary="Hybrid search",
    tags=["search"],
)
async def search(
    request: Request[Any, Any, Any],
    data: JSONBody[SearchRequest],
    *,
    search_service: NamedDependency[SearchService],
    keys: NamedDependency[SkipValidation[Keys]],
    metrics: NamedDependency[Metrics],
    api_key: NamedDependency[ApiKey | None],
) -> SearchResponse:
    search_service.opened()  # a 503 while search is not open comes before the request's own faults
    check_collection(api_key, data.collection)
    if api_key is not None and api_key.public and data.rerank is not None:
        check_public_rerank(data.rerank.depth, data.rerank.budget_ms, search_service.settings.search.rerank)
    request.state.collection = data.collection  # for a 404's nearest existing name (api/errors.py)
    query = to_query(data)
    # Chosen before billing: an unknown model is the caller's 400, not a billed search.
    reranker = search_service.reranker_for(data.rerank.model if data.rerank else None)
    async with billed(keys, api_key, SEARCH_UNITS_PER_QUERY):
        try:
            # Every stage stops when the client hangs up; a Tantivy search already
            # in its worker thread cannot be interrupted, but the query limits bound what it does.
            outcome = await cancel_on_disconnect(request, search_service.search(query, reranker))
        except ClientGone:
            metrics.searches_cancelled.inc()
            raise
    for degraded in outcome.degraded:
        metrics.degraded.labels(degraded.stage).inc()
    response = response_of(data.collection, outcome)
    record_search(request, data, api_key, response, search_service.settings.search.typo_tolerance)
    return response
