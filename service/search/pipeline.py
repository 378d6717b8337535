"""Hybrid search: BM25 and vector retrieval at once, RRF fusion, a reranked head, per-stage timings."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from service.errors import (
    BackendTimeout,
    BackendUnavailable,
    FathomError,
    InvalidRequest,
    NotFound,
    StorageFull,
)
from service.search.cursor import decode_cursor, fingerprint, page_of
from service.search.facets import FacetCounts
from service.search.fusion import FusedHit, collapse_to_documents, reciprocal_rank_fusion
from service.search.models import Filter, Hit
from service.search.protocols import Embedder, LexicalIndex, Reranker, VectorIndex
from service.search.results import Degradation, SearchHit, SearchOutcome
from service.search.typos import EXACT, Matching
from service.settings import SearchSettings

LEXICAL, VECTOR, RERANK, FACETS = "lexical", "vector", "rerank", "facets"
# A retriever raising these is answering the client (unknown collection, bad filter), not failing.
CLIENT_ERRORS: tuple[type[Exception], ...] = (NotFound, InvalidRequest)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search request; None takes the default from SearchSettings.

    `weights` are (lexical, vector); a retriever weighted 0 is not queried at all. `candidates` is
    the depth asked of each retriever. `min_score` is a cut-off on rerank scores (see SearchPipeline).
    `typo_tolerance` (default [search] typo_tolerance) lets lexical words the collection does not hold
    match within a typo or two; `prefix` says the last word is still being typed (service/search/typos.py).
    """

    query: str
    collection: str
    top_k: int | None = None
    filter: Filter | None = None
    candidates: int | None = None
    rrf_k: int | None = None
    weights: tuple[float, float] = (1.0, 1.0)
    rerank_enabled: bool | None = None
    rerank_depth: int | None = None
    rerank_budget_ms: float | None = None
    min_score: float | None = None
    passages: bool = False
    facets: tuple[str, ...] | None = None
    cursor: str | None = None
    typo_tolerance: bool | None = None
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """A validated SearchQuery with every default resolved."""

    query: str
    collection: str
    top_k: int
    filter: Filter | None
    candidates: int
    rrf_k: int
    weights: tuple[float, float]
    rerank: bool
    rerank_depth: int
    min_score: float | None
    passages: bool
    facets: tuple[str, ...] | None = None
    offset: int = 0
    # Milliseconds the rerank stage may take (0: no budget, rerank the whole depth).
    rerank_budget_ms: float = 0.0
    matching: Matching = EXACT

    @property
    def order(self) -> str:
        """Fingerprint of what shapes the final order (not top_k): what a cursor is bound to."""
        return fingerprint(
            self.query, self.collection, self.filter, self.candidates, self.rrf_k, self.weights,
            self.rerank, self.rerank_depth, self.min_score, self.passages,
            self.matching.typos, self.matching.prefix,
        )  # fmt: skip


def validate_query(request: SearchQuery, settings: SearchSettings) -> SearchPlan:
    """The request's plan, or InvalidRequest naming every field to fix."""
    plan = SearchPlan(
        query=request.query,
        collection=request.collection,
        top_k=settings.default_top_k if request.top_k is None else request.top_k,
        filter=request.filter,
        candidates=settings.candidates if request.candidates is None else request.candidates,
        rrf_k=settings.rrf_k if request.rrf_k is None else request.rrf_k,
        weights=request.weights,
        rerank=settings.rerank.enabled if request.rerank_enabled is None else request.rerank_enabled,
        rerank_depth=settings.rerank.depth if request.rerank_depth is None else request.rerank_depth,
        rerank_budget_ms=(
            settings.rerank.budget_ms if request.rerank_budget_ms is None else request.rerank_budget_ms
        ),
        min_score=request.min_score,
        passages=request.passages,
        facets=request.facets,
        matching=Matching(
            typos=settings.typo_tolerance if request.typo_tolerance is None else request.typo_tolerance,
            prefix=request.prefix,
        ),
    )
    problems = _problems(plan, settings)
    if problems:
        raise InvalidRequest("; ".join(problems))
    if request.cursor is None:
        return plan
    return replace(plan, offset=decode_cursor(request.cursor, plan.order))


# Terms as the lexical analysers cut them (Tantivy's simple tokenizer, Elasticsearch's standard one).
QUERY_TERM = re.compile(r"\w+")


def query_problems(query: str, settings: SearchSettings) -> list[str]:
    """A query over the length limits, said with the limit: checked first, before anything costly."""
    if len(query) > settings.max_query_chars:
        return [f"query is {len(query)} characters long; the limit is {settings.max_query_chars}"]
    terms = sum(1 for _ in QUERY_TERM.finditer(query))
    if terms > settings.max_query_terms:
        return [f"query has {terms} terms; the limit is {settings.max_query_terms}: shorten it"]
    return []


def _problems(plan: SearchPlan, settings: SearchSettings) -> list[str]:
    named = (("query", plan.query), ("collection", plan.collection))
    problems = [f"{name} must not be empty" for name, value in named if not value.strip()]
    problems.extend(query_problems(plan.query, settings))
    if not 1 <= plan.top_k <= settings.max_top_k:
        problems.append(f"top_k must be between 1 and {settings.max_top_k}, got {plan.top_k}")
    if not 1 <= plan.candidates <= settings.max_candidates:
        problems.append(f"candidates must be between 1 and {settings.max_candidates}, got {plan.candidates}")
    if plan.rrf_k < 1:
        problems.append(f"rrf_k must be at least 1, got {plan.rrf_k}")
    problems.extend(_weight_problems(plan.weights))
    if plan.rerank_depth < 0:
        problems.append(f"rerank_depth must be 0 (no rerank) or more, got {plan.rerank_depth}")
    if not 0 <= plan.rerank_budget_ms <= 60_000:
        problems.append(
            f"rerank budget_ms must be between 0 (no budget) and 60000, got {plan.rerank_budget_ms}"
        )
    if plan.top_k > settings.max_depth:
        problems.append(f"top_k must be at most max_depth ({settings.max_depth}), got {plan.top_k}")
    if plan.min_score is not None and not 0 <= plan.min_score <= 1:
        problems.append(f"min_score must be between 0 and 1 (a rerank score), got {plan.min_score}")
    return problems


def _weight_problems(weights: Sequence[float]) -> list[str]:
    if len(weights) != 2:
        return [f"weights must be two numbers (lexical, vector), got {len(weights)}"]
    if any(not math.isfinite(weight) or weight < 0 for weight in weights):
        return [f"weights must be finite and not negative, got {list(weights)}"]
    if not any(weights):
        return ["weights must not both be 0: at least one retriever has to count"]
    return []


@dataclass(slots=True)
class _Trace:
    """Timings and degradations of one search, filled in by its stages as they run."""

    timings: dict[str, float] = field(default_factory=dict)
    degraded: list[Degradation] = field(default_factory=list)
    reranked: int = 0

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record the stage's milliseconds, also when it fails or is cancelled."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = (time.perf_counter() - started) * 1000

    def degrade(self, stage: str, reason: str) -> None:
        self.degraded.append(Degradation(stage=stage, reason=reason))


class SearchPipeline:
    """Retrieve concurrently, fuse, rerank the head; answer with what worked and say what did not.

    A failed or timed-out retriever leaves the answer to the other one; only when every queried
    retriever fails is the search an error (BackendUnavailable). NotFound and InvalidRequest from a
    retriever propagate: they are the client's to fix, not an outage. A failed reranker leaves the
    fused order.

    Ordering: the reranked head (the first `rerank_depth` fused hits) sorted by rerank score, then
    the rest in fused order. `min_score` applies to rerank scores only: when reranking ran, hits
    below it are dropped, and so is the unreranked tail, which has no calibrated score to compare;
    when reranking did not run (off, depth 0, or failed) it is ignored, without an error.
    """

    def __init__(
        self,
        lexical: LexicalIndex,
        vectors: VectorIndex,
        embedder: Embedder,
        reranker: Reranker | None,
        settings: SearchSettings,
        *,
        check_collection: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`check_collection(name)` runs before a collection is searched and may refuse it (its vectors
        come from another embedder than `embedder`, say)."""
        self._check_collection = check_collection
        self._lexical = lexical
        self._vectors = vectors
        self._embedder = embedder
        self._reranker = reranker
        self._settings = settings

    async def search(self, request: SearchQuery, *, reranker: Reranker | None = None) -> SearchOutcome:
        """`reranker` replaces the pipeline's own for this search (a request naming its rerank model)."""
        trace = _Trace()
        with trace.timed("total"):
            plan = validate_query(request, self._settings)
            if self._check_collection is not None:
                await self._check_collection(plan.collection)
            rankings, facets = await self._retrieve_and_count(plan, trace)
            with trace.timed("fusion"):
                fused = reciprocal_rank_fusion(rankings, k=plan.rrf_k, weights=plan.weights)
                if not plan.passages:
                    fused = collapse_to_documents(fused)
            hits = await self._rerank(plan, fused, trace, reranker or self._reranker)
        page, cursor = page_of(hits, plan.offset, plan.top_k, self._settings.max_depth, plan.order)
        return SearchOutcome(
            hits=page,
            timings=trace.timings,
            degraded=trace.degraded,
            cursor=cursor,
            facets=facets,
            reranked=trace.reranked,
        )

    async def _retrieve_and_count(
        self, plan: SearchPlan, trace: _Trace
    ) -> tuple[list[list[Hit]], FacetCounts | None]:
        """The retrievers' rankings and, when asked for, facet counts from the lexical store meanwhile."""
        if plan.facets is None:
            return await self._retrieve(plan, trace), None
        try:
            async with asyncio.TaskGroup() as group:
                counting = group.create_task(self._facets(plan, plan.facets, trace))
                rankings = await self._retrieve(plan, trace)
        except ExceptionGroup as failure:
            raise failure.exceptions[0] from None
        return rankings, counting.result()

    async def _facets(self, plan: SearchPlan, fields: tuple[str, ...], trace: _Trace) -> FacetCounts | None:
        with trace.timed(FACETS):
            work = partial(
                self._lexical.facets,
                plan.collection,
                plan.query,
                fields,
                filter=plan.filter,
                matching=plan.matching,
            )
            return await _guarded(FACETS, work, self._settings.lexical_timeout, trace)

    async def _retrieve(self, plan: SearchPlan, trace: _Trace) -> list[list[Hit]]:
        """(lexical hits, vector hits), a failed branch's as []; raises when every queried one failed."""
        settings = self._settings
        try:
            async with asyncio.TaskGroup() as group:
                lexical_hits = partial(self._lexical_hits, plan, trace)
                vector_hits = partial(self._vector_hits, plan, trace)
                lexical = group.create_task(_guarded(LEXICAL, lexical_hits, settings.lexical_timeout, trace))
                vector = group.create_task(_guarded(VECTOR, vector_hits, settings.vector_timeout, trace))
        except ExceptionGroup as failure:
            # Only CLIENT_ERRORS escape a branch; the client needs the error, not the group.
            raise failure.exceptions[0] from None
        results = [lexical.result(), vector.result()]
        queried = [hits for hits, weight in zip(results, plan.weights, strict=True) if weight > 0]
        if all(hits is None for hits in queried):
            reasons = "; ".join(f"{note.stage}: {note.reason}" for note in trace.degraded)
            raise BackendUnavailable(f"no retriever could answer: {reasons}")
        return [hits or [] for hits in results]

    async def _lexical_hits(self, plan: SearchPlan, trace: _Trace) -> list[Hit]:
        if not plan.weights[0]:
            return []
        with trace.timed(LEXICAL):
            return await self._lexical.search(
                plan.collection,
                plan.query,
                limit=plan.candidates,
                filter=plan.filter,
                matching=plan.matching,
            )

    async def _vector_hits(self, plan: SearchPlan, trace: _Trace) -> list[Hit]:
        if not plan.weights[1]:
            return []
        with trace.timed("embed"):
            vector = await self._embedder.embed_query(plan.query)
        with trace.timed(VECTOR):
            return await self._vectors.search(
                plan.collection, vector, limit=plan.candidates, filter=plan.filter
            )

    async def _rerank(
        self, plan: SearchPlan, fused: list[FusedHit], trace: _Trace, reranker: Reranker | None
    ) -> list[SearchHit]:
        depth = min(plan.rerank_depth, len(fused)) if plan.rerank else 0
        scores = await self._rerank_scores(plan, fused[:depth], trace, reranker) if depth else None
        if not scores:  # failed, or not even one hit fitted in the budget
            return [SearchHit.from_fused(item) for item in fused]
        depth = trace.reranked = len(scores)  # within a budget, the head that fitted
        # sorted() is stable: equal rerank scores keep their fused order.
        head = sorted(zip(fused[:depth], scores, strict=True), key=lambda pair: -pair[1])
        reranked = [SearchHit.from_fused(item, rerank_score=score) for item, score in head]
        if plan.min_score is not None:
            return [hit for hit in reranked if hit.score >= plan.min_score]
        return reranked + [SearchHit.from_fused(item) for item in fused[depth:]]

    async def _rerank_scores(
        self, plan: SearchPlan, head: list[FusedHit], trace: _Trace, reranker: Reranker | None
    ) -> list[float] | None:
        """Rerank scores of the head (or of its first hits, as many as fit in the budget), or None
        after noting why the reranker could not give them."""
        if reranker is None:
            trace.degrade(RERANK, "no reranker is configured")
            return None
        passages = [_passage(item.hit) for item in head]
        with trace.timed(RERANK):
            budget = plan.rerank_budget_ms or None
            work = partial(reranker.score, plan.query, passages, budget_ms=budget)
            scores = await _guarded(RERANK, work, self._settings.rerank.timeout, trace, propagate=())
        if scores is None:
            return None
        # Within a budget the reranker may score a prefix of the head; without one it owes every score.
        if len(scores) > len(passages) or (budget is None and len(scores) != len(passages)):
            trace.degrade(RERANK, f"reranker returned {len(scores)} scores for {len(passages)} passages")
            return None
        return scores


async def _guarded(
    stage: str,
    work: Callable[[], Awaitable[T]],
    seconds: float,
    trace: _Trace,
    propagate: tuple[type[Exception], ...] = CLIENT_ERRORS,
) -> T | None:
    """The stage's result within `seconds`, or None after noting why it failed; `propagate` escapes."""
    try:
        async with asyncio.timeout(seconds):
            return await work()
    except propagate:
        raise
    except TimeoutError:
        trace.degrade(stage, f"timed out after {seconds:g} s")
    except FathomError as exc:
        # A backend's message may name its URL or a server path: that stays in the log, and the
        # client (degraded list, the all-failed 503) gets only what kind of failure it was.
        log.warning("%s stage degraded: %s", stage, exc)
        trace.degrade(stage, public_reason(exc))
    except Exception as exc:
        # Details stay in the log: the reason goes to clients and may not expose internals.
        log.warning("%s stage failed", stage, exc_info=exc)
        trace.degrade(stage, f"unexpected {type(exc).__name__}")
    return None


def public_reason(exc: FathomError) -> str:
    """What a client may read of a stage's failure: its kind, never its (internal) detail."""
    if isinstance(exc, BackendTimeout):
        return "timed out"
    if isinstance(exc, StorageFull):
        return "storage full"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    return exc.code


def _passage(hit: Hit) -> str:
    """What the cross-encoder reads: the title (when there is one), then the full chunk text."""
    return "\n".join(part for part in (hit.title, hit.text) if part)
