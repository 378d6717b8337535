"""The arithmetic of the start-up warning about a search reranker too slow for its budget."""

from __future__ import annotations

from service.rerank.budget_check import HANDFUL, budget_advice, hits_within


def test_hits_within_divides_the_budget_by_the_cost_of_one_pair() -> None:
    # 1 µs per token, 272-token pairs: 272 µs a pair, so 300 ms holds 1102 of them.
    assert hits_within(1e-6, 300.0, 272) == 1102
    # A model fifty times as costly fits a fiftieth.
    assert hits_within(50e-6, 300.0, 272) == 22


def test_nothing_measured_gives_no_grounds_for_a_warning() -> None:
    assert hits_within(0.0, 300.0, 272) == HANDFUL
    assert budget_advice("m", HANDFUL, 300.0, 272) is None


def test_the_advice_names_the_model_the_count_and_the_ways_out() -> None:
    advice = budget_advice("BAAI/bge-reranker-v2-m3", 1, 300.0, 272)
    assert advice is not None
    named = ("'BAAI/bge-reranker-v2-m3'", "about 1 hits", "budget_ms = 300", "int8", "[search.rerank] model")
    for part in named:
        assert part in advice
