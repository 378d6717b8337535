"""The textbook reference hybrid: its analyser, BM25 and RRF on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from indexers.reference import BM25, analyze, rrf
from service.ingest.documents import Document


def test_analyze_drops_lucene_stop_words_and_porter_stems() -> None:
    assert analyze("The Boundary-layers of a flow, in 2 flows") == ["boundari", "layer", "flow", "2", "flow"]


def weight(tf: int, length: int, average: float, n: int, total: int) -> float:
    """Lucene's BM25 for one term with k1 0.9, b 0.4."""
    idf = math.log(1 + (total - n + 0.5) / (n + 0.5))
    return idf * tf * 1.9 / (tf + 0.9 * (0.6 + 0.4 * length / average))


def test_bm25_scores_whole_documents_with_title_and_text_as_one_field() -> None:
    documents = [
        Document("short", "wing", "flutter"),  # 2 terms, title included
        Document("long", "", "wing flutter flutter noise noise noise"),  # 6 terms
        Document("other", "", "heat transfer"),  # 2 terms
    ]
    index = BM25(documents)
    average = (2 + 6 + 2) / 3
    scores = index.scores("wing wing flutter")  # wing said twice weighs twice
    assert scores == pytest.approx(
        {
            "short": 2 * weight(1, 2, average, 2, 3) + weight(1, 2, average, 2, 3),
            "long": 2 * weight(1, 6, average, 2, 3) + weight(2, 6, average, 2, 3),
        }
    )
    assert index.search("wing wing flutter") == ["short", "long"]
    assert index.search("flutter flutter noise") == ["long", "short"]
    assert index.search("the of") == [] and index.search("heat", limit=1) == ["other"]


def test_rrf_sums_reciprocal_ranks_and_breaks_ties_by_id() -> None:
    fused = rrf([["a", "b", "c"], ["c", "b"]], k=60)
    assert fused == ["c", "b", "a"]  # c: 1/63 + 1/61; b: 1/62 + 1/62; a: 1/61
    assert 1 / 63 + 1 / 61 > 2 / 62 > 1 / 61
    assert rrf([["y"], ["x"]]) == ["x", "y"]
    assert rrf([["a", "b"]], limit=1) == ["a"]


@pytest.mark.parametrize("query", ["", "  ", "the and"])
def test_queries_without_words_find_nothing(query: str) -> None:
    assert BM25([Document("d", "t", "words")]).search(query) == []
