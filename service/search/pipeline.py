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
from service.search.cursor import decode_page, fingerprint, page_of
from service.search.facets import FacetCounts
from service.search.floor import AUTO, OFF, FloorSetting, VectorFloors
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
    # "auto": the collection's measured floor (service/search/floor.py); a number: that cosine; "off".
    vector_floor: FloorSetting | None = None


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
    # Fused hits per rerank block: each block of the first `rerank_depth` is sorted by rerank score
    # on its own (see SearchPipeline).
    rerank_block: int = 1
    # An earlier page of this walk was answered in fused order: the rest of the walk keeps it.
    rerank_fused: bool = False
    vector_floor: FloorSetting = OFF

    @property
    def order(self) -> str:
        """Fingerprint of what shapes the final order (not top_k): what a cursor is bound to."""
        return fingerprint(
            self.query, self.collection, self.filter, self.candidates, self.rrf_k, self.weights,
            self.rerank, self.rerank_depth, self.min_score, self.passages,
            self.matching.typos, self.matching.prefix, self.rerank_block, self.vector_floor,
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
        vector_floor=_floor_setting(request, settings),
    )
    plan = replace(plan, rerank_block=_rerank_block(plan, settings))
    problems = _problems(plan, settings)
    if problems:
        raise InvalidRequest("; ".join(problems))
    if request.cursor is None:
        return plan
    offset, fused = decode_page(request.cursor, plan.order)
    return replace(plan, offset=offset, rerank_fused=fused)


def _floor_setting(request: SearchQuery, settings: SearchSettings) -> FloorSetting:
    """The request's floor, else the collection's ([search.vector_floors]), else [search] vector_floor."""
    if request.vector_floor is not None:
        return request.vector_floor
    return settings.vector_floors.get(request.collection, settings.vector_floor)


def _rerank_block(plan: SearchPlan, settings: SearchSettings) -> int:
    """Hits per rerank block: the whole depth without a budget (every score is owed anyway) or with
    `min_score` (a cut-off over the whole reranked list); else [search.rerank] block."""
    whole = max(plan.rerank_depth, 1)
    if not plan.rerank_budget_ms or plan.min_score is not None or settings.rerank.block <= 0:
        return whole
    return min(settings.rerank.block, whole)


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
    floor = plan.vector_floor
    if floor not in (AUTO, OFF) and not (isinstance(floor, int | float) and -1 <= floor <= 1):
        problems.append(f'vector_floor must be "auto", "off" or a cosine between -1 and 1, got {floor!r}')
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

    Ordering: the first `rerank_depth` fused hits are cut into blocks of `rerank_block`, each sorted
    by rerank score on its own (a stable sort: ties keep their fused order); the rest keep their fused
    order. A page has every block it shows scored in full, whatever that takes (bounded by the rerank
    timeout), so the list a page slices is a function of the index and the request alone, never of how
    much the machine could score in time: the same request answers the same hits in the same order,
    and pages of one walk never repeat or skip. The budget then buys the blocks after the page, scored
    ahead for the next page (kept by a caching reranker; see service/rerank/score_cache.py), so a
    repeat whose next page is scored costs no rerank work at all. When the
    reranker fails, the page comes in fused order and its cursor keeps the walk in fused order.

    `min_score` applies to rerank scores only: when reranking ran, hits below it are dropped, and so is
    the unreranked tail, which has no calibrated score to compare; when reranking did not run (off,
    depth 0, or failed) it is ignored, without an error.

    Relevance floor: a vector hit the lexical side did not find, and whose cosine is below the
    plan's floor, is dropped (service/search/floor.py); so are passages with neither title nor text.
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
        prefetch: bool = False,
    ) -> None:
        """`check_collection(name)` runs before a collection is searched and may refuse it (its vectors
        come from another embedder than `embedder`, say). `prefetch`: spend what is left of the budget
        scoring the blocks after the page, which pays only when the reranker keeps scores (a cache)."""
        self._check_collection = check_collection
        self._lexical = lexical
        self._vectors = vectors
        self._embedder = embedder
        self._reranker = reranker
        self._settings = settings
        self._prefetch = prefetch
        self._floors = VectorFloors(
            embedder, vectors, probes=settings.vector_floor_probes, share=settings.vector_floor_percentile
        )

    @property
    def floors(self) -> VectorFloors:
        return self._floors

    async def search(self, request: SearchQuery, *, reranker: Reranker | None = None) -> SearchOutcome:
        """`reranker` replaces the pipeline's own for this search (a request naming its rerank model)."""
        trace = _Trace()
        with trace.timed("total"):
            plan = validate_query(request, self._settings)
            if self._check_collection is not None:
                await self._check_collection(plan.collection)
            rankings, facets = await self._retrieve_and_count(plan, trace)
            with trace.timed("fusion"):
                fused = reciprocal_rank_fusion(
                    [with_text(hits) for hits in rankings], k=plan.rrf_k, weights=plan.weights
                )
                if not plan.passages:
                    fused = collapse_to_documents(fused)
            fused = await self._above_floor(plan, fused)
            hits, in_fused_order = await self._rerank(plan, fused, trace, reranker or self._reranker)
        settings = self._settings
        page, cursor = page_of(
            hits, plan.offset, plan.top_k, settings.max_depth, plan.order, fused=in_fused_order
        )
        return SearchOutcome(
            hits=page,
            timings=trace.timings,
            degraded=trace.degraded,
            cursor=cursor,
            facets=facets,
            reranked=trace.reranked,
            found=min(len(hits), settings.max_depth),
        )

    async def _above_floor(self, plan: SearchPlan, fused: list[FusedHit]) -> list[FusedHit]:
        """Without the vector-only hits below the plan's floor (measured only when there are some)."""
        lexical_only = plan.weights[1] == 0
        if plan.vector_floor == OFF or lexical_only or all(_lexical_found(item) for item in fused):
            return fused
        setting = plan.vector_floor
        floor = setting if isinstance(setting, float | int) else await self._floors.floor(plan.collection)
        if floor is None:
            return fused
        return [item for item in fused if _lexical_found(item) or _cosine(item) >= floor]

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
    ) -> tuple[list[SearchHit], bool]:
        """The final list, and whether it is in fused order because the reranker could not answer."""
        plain = [SearchHit.from_fused(item) for item in fused]
        depth = min(plan.rerank_depth, len(fused)) if plan.rerank else 0
        span = shown_blocks(plan.offset, plan.top_k, depth, plan.rerank_block)
        if span is None or plan.rerank_fused:
            return plain, plan.rerank_fused
        start, end = span
        with trace.timed(RERANK):
            started = time.perf_counter()
            scores = await self._rerank_scores(plan, fused[start:end], trace, reranker)
            if scores is None:
                return plain, True
            trace.reranked = end
            spent_ms = (time.perf_counter() - started) * 1000
            following = shown_blocks(plan.offset + plan.top_k, plan.top_k, depth, plan.rerank_block)
            if self._prefetch and reranker is not None and plan.rerank_budget_ms > spent_ms and following:
                ahead = fused[max(end, following[0]) : following[1]]
                await self._score_ahead(plan, ahead, plan.rerank_budget_ms - spent_ms, reranker)
        ranked = plain[:start]
        for first in range(start, end, plan.rerank_block):
            last = min(first + plan.rerank_block, end)
            block = zip(fused[first:last], scores[first - start : last - start], strict=True)
            # sorted() is stable: equal rerank scores keep their fused order.
            ranked.extend(
                SearchHit.from_fused(item, rerank_score=score)
                for item, score in sorted(block, key=lambda pair: -pair[1])
            )
        if plan.min_score is not None:  # one block, the whole depth (_rerank_block)
            return [hit for hit in ranked if hit.score >= plan.min_score], False
        return ranked + plain[end:], False

    async def _rerank_scores(
        self, plan: SearchPlan, shown: list[FusedHit], trace: _Trace, reranker: Reranker | None
    ) -> list[float] | None:
        """Rerank scores of every hit in the blocks a page shows, or None after noting why the
        reranker could not give them all."""
        if reranker is None:
            trace.degrade(RERANK, "no reranker is configured")
            return None
        passages = [_passage(item.hit) for item in shown]
        work = partial(reranker.score, plan.query, passages)
        scores = await _guarded(RERANK, work, self._settings.rerank.timeout, trace, propagate=())
        if scores is None:
            return None
        if len(scores) != len(passages):
            trace.degrade(RERANK, f"reranker returned {len(scores)} scores for {len(passages)} passages")
            return None
        return scores

    async def _score_ahead(
        self, plan: SearchPlan, ahead: list[FusedHit], budget_ms: float, reranker: Reranker
    ) -> None:
        """Score the hits after the page within what is left of the budget, for the caching reranker
        to keep; the answer does not use them, so a failure here degrades nothing."""
        passages = [_passage(item.hit) for item in ahead]
        work = partial(reranker.score, plan.query, passages, budget_ms=budget_ms)
        await _guarded(RERANK, work, self._settings.rerank.timeout, _Trace(), propagate=())


def shown_blocks(offset: int, size: int, depth: int, block: int) -> tuple[int, int] | None:
    """The span [start, end) of the rerank blocks a page [offset, offset + size) overlaps, within the
    first `depth` hits; None when the page lies past them."""
    if offset >= depth or block < 1:
        return None
    start = offset // block * block
    end = min(depth, -(-(offset + size) // block) * block)
    return start, end


def with_text(hits: list[Hit]) -> list[Hit]:
    """Without passages that hold neither title nor text: an empty document is never a hit."""
    return [hit for hit in hits if hit.text.strip() or hit.title.strip()]


def _lexical_found(item: FusedHit) -> bool:
    return item.evidence[0].rank is not None


def _cosine(item: FusedHit) -> float:
    score = item.evidence[1].score
    return -1.0 if score is None else score


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
