"""trec_eval-style metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from indexers.evaluation import mean_over_queries, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_uses_linear_graded_gains_and_the_full_ideal() -> None:
    judged = {"a": 3, "b": 1, "c": 2}
    # retrieved b then a: DCG = 1/log2(2) + 3/log2(3); ideal = 3 + 2/log2(3) + 1/2
    expected = (1 + 3 / math.log2(3)) / (3 + 2 / math.log2(3) + 1 / 2)
    assert ndcg_at_k(["b", "x"], judged, k=10) == pytest.approx(1 / (3 + 2 / math.log2(3) + 0.5))
    assert ndcg_at_k(["b", "a"], judged, k=10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "c", "b"], judged) == pytest.approx(1.0)


def test_cut_off_applies_to_the_ranking_and_the_ideal() -> None:
    judged = {"a": 1, "b": 1}
    assert ndcg_at_k(["x", "a"], judged, k=1) == 0.0
    assert ndcg_at_k(["a", "b"], judged, k=1) == pytest.approx(1.0)


def test_recall_and_mrr() -> None:
    judged = {"a": 1, "b": 2, "c": 0}
    assert recall_at_k(["x", "b"], judged, k=100) == pytest.approx(0.5)
    assert mrr_at_k(["x", "c", "b"], judged, k=10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"], judged) == 0.0


def test_every_judged_query_counts_and_identical_ids_are_kept() -> None:
    qrels = {"1": {"1": 1}, "2": {"7": 1}, "3": {"9": 0}}
    rankings = {"1": ["1"]}  # query 1 retrieves document 1: same id, still relevant
    # query 2 retrieved nothing and scores 0; query 3 has no positive judgement and does not count
    assert mean_over_queries(rankings, qrels, "ndcg") == pytest.approx(0.5)
