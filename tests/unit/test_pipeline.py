"""The search pipeline against in-memory fakes: concurrency, timeouts, degradation, rerank, cut-offs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.errors import BackendUnavailable, InvalidRequest, NotFound
from service.search.models import Equals, Filter, Hit
from service.search.pipeline import SearchPipeline, SearchQuery, validate_query
from service.search.results import Degradation, SearchOutcome
from service.search.typos import Matching
from service.settings import SearchRerankSettings, SearchSettings
from tests.unit.search_fakes import (
    FUSED_DOCS,
    FakeEmbedder,
    FakeLexical,
    FakeReranker,
    FakeVectors,
    hit,
)


def pipeline(
    lexical: FakeLexical | None = None,
    vectors: FakeVectors | None = None,
    embedder: FakeEmbedder | None = None,
    reranker: FakeReranker | None = None,
    **settings: Any,
) -> SearchPipeline:
    # No budget unless a test sets one: a reranker that answers short is then a failure, not a budget.
    budget = settings.pop("rerank_budget_ms", 0.0)
    rerank = SearchRerankSettings(timeout=settings.pop("rerank_timeout", 10.0), depth=2, budget_ms=budget)
    # The fakes' vectors score alike for every query: a measured floor would hide them all.
    settings.setdefault("vector_floor", "off")
    return SearchPipeline(
        lexical or FakeLexical(),
        vectors or FakeVectors(),
        embedder or FakeEmbedder(),
        reranker,
        SearchSettings(rerank=rerank, **settings),
    )


def query(**fields: Any) -> SearchQuery:
    return SearchQuery(**{"query": "what is fathom", "collection": "docs", "rerank_enabled": False, **fields})


def doc_ids(outcome: SearchOutcome) -> list[str]:
    return [found.id for found in outcome.hits]


@pytest.mark.anyio
async def test_fuses_both_retrievers_into_documents_with_evidence() -> None:
    outcome = await pipeline().search(query())

    assert doc_ids(outcome) == FUSED_DOCS
    assert outcome.degraded == []
    top = outcome.hits[0]
    assert (top.chunk_id, top.title, top.snippet) == ("d2#0", "Title d2", "text d2#0")
    assert (top.bm25.rank, top.bm25.score, top.vector.rank, top.vector.score) == (2, 7.0, 1, 0.9)
    assert top.score == top.fused_score == pytest.approx(1 / 62 + 1 / 61)
    assert top.rerank_score is None
    assert (outcome.hits[2].bm25.rank, outcome.hits[2].bm25.score) == (None, None)


@pytest.mark.anyio
async def test_passages_are_not_collapsed() -> None:
    outcome = await pipeline().search(query(passages=True))

    assert [found.chunk_id for found in outcome.hits] == ["d2#0", "d1#0", "d4#0", "d3#0", "d1#1"]


@pytest.mark.anyio
async def test_retrievers_get_collection_depth_and_filter() -> None:
    lexical, vectors, embedder = FakeLexical(), FakeVectors(), FakeEmbedder()
    only_en = Filter((Equals("lang", "en"),))

    await pipeline(lexical, vectors, embedder).search(query(candidates=7, filter=only_en))

    expected = {"collection": "docs", "limit": 7, "filter": only_en}
    assert lexical.calls == [{**expected, "text": "what is fathom", "matching": Matching(typos=True)}]
    assert vectors.calls == [{**expected, "vector": [0.1, 0.2, 0.3]}]
    assert embedder.queries == ["what is fathom"]


@pytest.mark.anyio
async def test_typo_tolerance_and_prefix_reach_the_lexical_store() -> None:
    lexical = FakeLexical()

    await pipeline(lexical).search(query(typo_tolerance=False, prefix=True))

    assert lexical.calls[0]["matching"] == Matching(typos=False, prefix=True)


@pytest.mark.anyio
async def test_retrievers_run_concurrently() -> None:
    slow = pipeline(FakeLexical(delay=0.2), FakeVectors(delay=0.2))

    started = time.perf_counter()
    outcome = await slow.search(query())
    elapsed = time.perf_counter() - started

    assert elapsed < 0.35, f"0.2 s + 0.2 s took {elapsed:.3f} s: the retrievers ran one after the other"
    assert outcome.timings["lexical"] >= 190
    assert outcome.timings["vector"] >= 190


@pytest.mark.anyio
async def test_timings_cover_every_stage_that_ran() -> None:
    reranked = await pipeline(reranker=FakeReranker()).search(query(rerank_enabled=True))
    plain = await pipeline().search(query())

    assert set(reranked.timings) == {"lexical", "embed", "vector", "fusion", "rerank", "total"}
    assert all(ms >= 0 for ms in reranked.timings.values())
    assert reranked.timings["total"] >= reranked.timings["vector"]
    assert "rerank" not in plain.timings


@pytest.mark.anyio
async def test_slow_lexical_times_out_and_vector_answers() -> None:
    slow = pipeline(FakeLexical(delay=5), lexical_timeout=0.05)

    started = time.perf_counter()
    outcome = await slow.search(query())

    assert time.perf_counter() - started < 1
    assert outcome.degraded == [Degradation("lexical", "timed out after 0.05 s")]
    assert doc_ids(outcome) == ["d2", "d4", "d1"]
    assert all(found.bm25.rank is None for found in outcome.hits)


@pytest.mark.anyio
async def test_embedding_counts_in_the_vector_timeout() -> None:
    slow = pipeline(embedder=FakeEmbedder(delay=0.08), vectors=FakeVectors(delay=0.08), vector_timeout=0.12)

    outcome = await slow.search(query())

    assert outcome.degraded == [Degradation("vector", "timed out after 0.12 s")]
    assert doc_ids(outcome) == ["d1", "d2", "d3"]


@pytest.mark.anyio
async def test_failing_lexical_degrades_with_its_reason() -> None:
    down = FakeLexical(error=BackendUnavailable("elasticsearch is unreachable at :9200"))

    outcome = await pipeline(down).search(query())

    # The backend's message (its address) stays in the log; the client reads the kind of failure.
    assert outcome.degraded == [Degradation("lexical", "unavailable")]
    assert doc_ids(outcome) == ["d2", "d4", "d1"]


@pytest.mark.anyio
async def test_unexpected_error_degrades_without_exposing_its_message() -> None:
    broken = FakeEmbedder(error=RuntimeError("secret internal detail"))

    outcome = await pipeline(embedder=broken).search(query())

    assert outcome.degraded == [Degradation("vector", "unexpected RuntimeError")]
    assert doc_ids(outcome) == ["d1", "d2", "d3"]


@pytest.mark.anyio
async def test_both_retrievers_failing_is_backend_unavailable() -> None:
    down = pipeline(
        FakeLexical(error=BackendUnavailable("es down")), FakeVectors(delay=5), vector_timeout=0.05
    )

    with pytest.raises(
        BackendUnavailable, match=r"no retriever could answer: lexical: unavailable; vector: timed out"
    ):
        await down.search(query())


@pytest.mark.anyio
async def test_zero_weight_retriever_is_not_queried() -> None:
    lexical = FakeLexical()

    outcome = await pipeline(lexical).search(query(weights=(0.0, 1.0)))

    assert lexical.calls == []
    assert outcome.degraded == []
    assert doc_ids(outcome) == ["d2", "d4", "d1"]
    assert "lexical" not in outcome.timings


@pytest.mark.anyio
async def test_only_queried_retriever_failing_is_backend_unavailable() -> None:
    down = pipeline(vectors=FakeVectors(error=BackendUnavailable("qdrant down")))

    with pytest.raises(BackendUnavailable, match="vector: unavailable"):
        await down.search(query(weights=(0.0, 1.0)))


@pytest.mark.anyio
@pytest.mark.parametrize("error", [NotFound("no collection 'docs'"), InvalidRequest("bad filter field")])
@pytest.mark.parametrize("side", ["lexical", "vector"])
async def test_client_errors_propagate_and_cancel_the_other_branch(error: Exception, side: str) -> None:
    lexical = FakeLexical(error=error) if side == "lexical" else FakeLexical(delay=5)
    vectors = FakeVectors(error=error) if side == "vector" else FakeVectors(delay=5)

    started = time.perf_counter()
    with pytest.raises(type(error), match=str(error)):
        await pipeline(lexical, vectors).search(query())
    assert time.perf_counter() - started < 1


@pytest.mark.anyio
async def test_rerank_reorders_only_the_head() -> None:
    reranker = FakeReranker({"d1#0": 0.9, "d2#0": 0.4})

    outcome = await pipeline(reranker=reranker).search(query(rerank_enabled=True, rerank_depth=2))

    assert doc_ids(outcome) == ["d1", "d2", "d4", "d3"]
    assert [found.rerank_score for found in outcome.hits] == [0.9, 0.4, None, None]
    assert [found.score for found in outcome.hits[:2]] == [0.9, 0.4]
    assert outcome.hits[2].score == outcome.hits[2].fused_score == pytest.approx(1 / 62)
    assert outcome.degraded == []


@pytest.mark.anyio
async def test_rerank_depth_defaults_to_settings() -> None:
    reranker = FakeReranker()

    await pipeline(reranker=reranker).search(query(rerank_enabled=None))

    assert len(reranker.calls[0]) == 2


@pytest.mark.anyio
async def test_reranker_reads_title_and_full_chunk_text_not_the_snippet() -> None:
    lexical = FakeLexical(
        [hit("d1#0", 1.0, snippet="<em>short</em>"), Hit("d9#0", "d9", 0.5, text="untitled")]
    )
    reranker = FakeReranker()

    outcome = await pipeline(lexical, FakeVectors([]), reranker=reranker).search(query(rerank_enabled=True))

    assert reranker.calls == [["Title d1\ntext d1#0", "untitled"]]
    assert outcome.hits[0].snippet == "<em>short</em>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reranker", "reason"),
    [
        (FakeReranker(error=BackendUnavailable("reranker at http://10.0.0.7:8080 is down")), "unavailable"),
        (FakeReranker(delay=5), "timed out after 0.05 s"),
        (FakeReranker(drop_one=True), "reranker returned 1 scores for 2 passages"),
    ],
)
async def test_rerank_failure_keeps_fused_order(reranker: FakeReranker, reason: str) -> None:
    outcome = await pipeline(reranker=reranker, rerank_timeout=0.05).search(
        query(rerank_enabled=True, min_score=0.5)
    )

    assert outcome.degraded == [Degradation("rerank", reason)]
    assert doc_ids(outcome) == FUSED_DOCS
    assert all(found.rerank_score is None for found in outcome.hits)


@pytest.mark.anyio
async def test_rerank_requested_without_a_reranker_is_degraded() -> None:
    outcome = await pipeline().search(query(rerank_enabled=True))

    assert outcome.degraded == [Degradation("rerank", "no reranker is configured")]
    assert doc_ids(outcome) == FUSED_DOCS


@pytest.mark.anyio
async def test_a_search_may_name_its_own_reranker() -> None:
    """A request naming a rerank model scores with that one; the pipeline's own is left alone."""
    own, named = FakeReranker(), FakeReranker({"d4#0": 0.9, "d1#0": 0.1})
    shared = pipeline(reranker=own)

    outcome = await shared.search(query(rerank_enabled=True), reranker=named)
    assert len(named.calls) == 1 and own.calls == []
    assert doc_ids(outcome)[:2] == ["d1", "d2"]  # the head (depth 2: d2, d1) in the named one's order

    await shared.search(query(rerank_enabled=True))
    assert len(own.calls) == 1 and len(named.calls) == 1


@pytest.mark.anyio
async def test_rerank_depth_zero_skips_the_reranker() -> None:
    reranker = FakeReranker()

    outcome = await pipeline(reranker=reranker).search(query(rerank_enabled=True, rerank_depth=0))

    assert reranker.calls == []
    assert outcome.degraded == []
    assert doc_ids(outcome) == FUSED_DOCS


@pytest.mark.anyio
async def test_min_score_keeps_only_reranked_hits_that_reach_it() -> None:
    reranker = FakeReranker({"d1#0": 0.9, "d2#0": 0.3, "d4#0": 0.6, "d3#0": 0.5})

    outcome = await pipeline(reranker=reranker).search(
        query(rerank_enabled=True, rerank_depth=3, min_score=0.5)
    )

    assert doc_ids(outcome) == ["d1", "d4"]


@pytest.mark.anyio
async def test_min_score_is_ignored_without_rerank() -> None:
    outcome = await pipeline().search(query(min_score=0.99))

    assert doc_ids(outcome) == FUSED_DOCS
    assert outcome.degraded == []


@pytest.mark.anyio
async def test_top_k_cuts_after_rerank() -> None:
    reranker = FakeReranker({"d3#0": 0.8, "d4#0": 0.7})

    outcome = await pipeline(reranker=reranker).search(query(rerank_enabled=True, rerank_depth=4, top_k=2))

    assert doc_ids(outcome) == ["d3", "d4"]


@pytest.mark.anyio
async def test_invalid_query_is_refused_before_any_retrieval() -> None:
    lexical = FakeLexical()

    with pytest.raises(InvalidRequest, match="query must not be empty"):
        await pipeline(lexical).search(query(query=" "))
    assert lexical.calls == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"query": "  "}, "query must not be empty"),
        ({"collection": ""}, "collection must not be empty"),
        ({"top_k": 0}, "top_k must be between 1 and 100, got 0"),
        ({"top_k": 101}, "top_k must be between 1 and 100, got 101"),
        ({"candidates": 0}, "candidates must be between 1 and 1000, got 0"),
        ({"candidates": 1001}, "candidates must be between 1 and 1000, got 1001"),
        ({"rrf_k": 0}, "rrf_k must be at least 1, got 0"),
        ({"weights": (-1.0, 1.0)}, r"weights must be finite and not negative, got \[-1.0, 1.0\]"),
        ({"weights": (float("inf"), 1.0)}, "weights must be finite"),
        ({"weights": (0.0, 0.0)}, "weights must not both be 0"),
        ({"weights": (1.0,)}, r"weights must be two numbers \(lexical, vector\), got 1"),
        ({"rerank_depth": -1}, "rerank_depth must be 0 .* or more, got -1"),
        ({"min_score": 1.5}, r"min_score must be between 0 and 1 .*, got 1.5"),
        ({"min_score": -0.1}, "min_score must be between 0 and 1"),
        ({"min_score": float("nan")}, "min_score must be between 0 and 1"),
    ],
)
def test_validation_says_what_to_fix(fields: dict[str, Any], message: str) -> None:
    request = SearchQuery(**{"query": "q", "collection": "docs", **fields})

    with pytest.raises(InvalidRequest, match=message):
        validate_query(request, SearchSettings())


def test_validation_reports_every_problem_at_once() -> None:
    request = SearchQuery(query="", collection="docs", top_k=0, rrf_k=0)

    with pytest.raises(InvalidRequest) as raised:
        validate_query(request, SearchSettings())

    assert str(raised.value).count(";") == 2


def test_validation_resolves_defaults_from_settings() -> None:
    settings = SearchSettings(default_top_k=7, candidates=30, rrf_k=20)

    plan = validate_query(SearchQuery(query="q", collection="docs"), settings)

    assert (plan.top_k, plan.candidates, plan.rrf_k) == (7, 30, 20)
    assert (plan.rerank, plan.rerank_depth, plan.weights) == (True, 50, (1.0, 1.0))
