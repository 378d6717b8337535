"""Search quality on Cranfield (embedded default, no reranker): hybrid at least as good as each retriever.

Reference nDCG@10 measured independently with all-MiniLM-L6-v2: BM25 0.352, dense 0.383, RRF 0.416.
"""

from __future__ import annotations

import pytest

from indexers.evaluation import load_qrels, load_queries, mean_over_queries
from service.runtime import open_runtime
from service.search.pipeline import SearchQuery
from service.settings import Settings
from tests.conftest import DATA

pytestmark = pytest.mark.anyio
CRANFIELD = DATA / "cranfield"
STAGES = {"bm25": (1.0, 0.0), "dense": (0.0, 1.0), "hybrid": (1.0, 1.0)}


async def ndcg_per_stage(settings: Settings) -> dict[str, float]:
    queries = load_queries(CRANFIELD / "queries.jsonl")
    qrels = load_qrels(CRANFIELD / "qrels" / "test.tsv")
    async with open_runtime(settings, keys=False, models=False) as runtime:
        pipeline = runtime.search.pipeline
        figures = {}
        for stage, weights in STAGES.items():
            rankings = {}
            for query_id, text in queries.items():
                request = SearchQuery(
                    text, "cranfield", top_k=10, candidates=100, weights=weights, rerank_enabled=False
                )
                outcome = await pipeline.search(request)
                assert outcome.degraded == []
                rankings[query_id] = [hit.id for hit in outcome.hits]
            figures[stage] = mean_over_queries(rankings, qrels, "ndcg", k=10)
    return figures


async def test_hybrid_is_at_least_the_better_retriever(indexed_cranfield: Settings) -> None:
    figures = await ndcg_per_stage(indexed_cranfield)
    print("cranfield nDCG@10:", {stage: round(value, 4) for stage, value in figures.items()})
    assert figures["bm25"] > 0.30 and figures["dense"] > 0.33  # sane retrievers, near the references
    assert figures["hybrid"] >= max(figures["bm25"], figures["dense"])
