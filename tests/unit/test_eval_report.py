"""`fathom eval`'s report: per-query scores, deltas against a baseline stage, the table."""

from __future__ import annotations

import pytest

from indexers.eval_report import deltas, stage_result, table

QRELS = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}, "q4": {"z": 0}}


def test_stage_result_keeps_each_judged_query_and_means_over_them() -> None:
    result = stage_result("s", {"q1": ["a"], "q2": ["x", "b"]}, QRELS, [2.0, 4.0])
    assert set(result.per_query) == {"q1", "q2", "q3"}  # q4 has no relevant document: not judged
    assert result.per_query["q1"] == {"ndcg_at_10": 1.0, "recall_at_100": 1.0, "mrr_at_10": 1.0}
    assert result.per_query["q2"]["mrr_at_10"] == 0.5 and result.per_query["q3"]["ndcg_at_10"] == 0.0
    assert result.mrr_at_10 == pytest.approx(1.5 / 3) and result.recall_at_100 == pytest.approx(2 / 3)
    assert (result.p50_ms, result.degraded) == (3.0, 0)


def test_deltas_count_the_queries_each_stage_wins_and_loses() -> None:
    base = stage_result("base", {"q1": ["a"], "q2": ["x", "b"]}, QRELS, [1.0])
    other = stage_result("other", {"q1": ["x", "a"], "q2": ["b"], "q3": ["c"]}, QRELS, [1.0])
    against = deltas([base, other], "base")
    assert (against["base"].wins, against["base"].losses, against["base"].ndcg_at_10) == (0, 0, 0.0)
    assert (against["other"].wins, against["other"].losses) == (2, 1)  # q2 and q3 rose, q1 fell
    assert against["other"].ndcg_at_10 == pytest.approx(other.ndcg_at_10 - base.ndcg_at_10)
    with pytest.raises(KeyError):
        deltas([base], "missing")


def test_table_shows_deltas_only_with_a_baseline() -> None:
    base = stage_result("hybrid", {"q1": ["a"]}, QRELS, [1.0])
    other = stage_result("ref-hybrid", {"q1": ["a"], "q3": ["c"]}, QRELS, [1.0])
    assert "ΔnDCG@10" not in table([base, other])
    lines = table([base, other], "hybrid").splitlines()
    assert "ΔnDCG@10" in lines[0] and lines[-1].startswith("deltas against hybrid")
    assert lines[2].startswith("ref-hybrid") and "+0.3333" in lines[2] and "1/0" in lines[2]
