"""Reciprocal rank fusion and the collapse to documents, checked against hand-computed numbers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.search.fusion import (
    FusedHit,
    StageEvidence,
    collapse_to_documents,
    reciprocal_rank_fusion,
)
from service.search.models import Hit


def hit(
    chunk_id: str,
    score: float = 1.0,
    *,
    title: str = "",
    text: str = "",
    snippet: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Hit:
    """A hit whose document is the chunk id up to "#"."""
    doc_id = chunk_id.partition("#")[0]
    return Hit(chunk_id, doc_id, score, title, text, snippet, metadata or {})


def scores(fused: list[FusedHit]) -> dict[str, float]:
    return {item.hit.chunk_id: item.fused_score for item in fused}


def ids(fused: list[FusedHit]) -> list[str]:
    return [item.hit.chunk_id for item in fused]


def test_single_ranking_scores_one_over_k_plus_rank() -> None:
    fused = reciprocal_rank_fusion([[hit("a"), hit("b"), hit("c")]])

    assert ids(fused) == ["a", "b", "c"]
    assert scores(fused) == pytest.approx({"a": 1 / 61, "b": 1 / 62, "c": 1 / 63})


def test_scores_sum_over_rankings() -> None:
    lexical = [hit("a"), hit("b"), hit("c")]
    vector = [hit("c"), hit("d"), hit("a")]

    fused = reciprocal_rank_fusion([lexical, vector])

    assert scores(fused) == pytest.approx(
        {"a": 1 / 61 + 1 / 63, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 62}
    )


def test_custom_k() -> None:
    fused = reciprocal_rank_fusion([[hit("a"), hit("b")], [hit("b")]], k=1)

    assert scores(fused) == pytest.approx({"b": 1 / 3 + 1 / 2, "a": 1 / 2})
    assert ids(fused) == ["b", "a"]


def test_weights_scale_each_ranking() -> None:
    fused = reciprocal_rank_fusion([[hit("a"), hit("b")], [hit("b"), hit("a")]], weights=[2.0, 0.5])

    assert scores(fused) == pytest.approx({"a": 2 / 61 + 0.5 / 62, "b": 2 / 62 + 0.5 / 61})
    assert ids(fused) == ["a", "b"]


def test_zero_weight_keeps_evidence_but_adds_nothing() -> None:
    fused = reciprocal_rank_fusion([[hit("a")], [hit("b", score=0.9)]], weights=[1.0, 0.0])

    assert ids(fused) == ["a", "b"]
    assert fused[1].fused_score == 0.0
    assert fused[1].evidence == (StageEvidence(), StageEvidence(rank=1, score=0.9))


def test_evidence_has_rank_and_score_per_ranking_and_none_elsewhere() -> None:
    fused = reciprocal_rank_fusion([[hit("a", 12.5), hit("b", 7.0)], [hit("b", 0.81)]])
    by_id = {item.hit.chunk_id: item for item in fused}

    assert by_id["a"].evidence == (StageEvidence(rank=1, score=12.5), StageEvidence(None, None))
    assert by_id["b"].evidence == (StageEvidence(rank=2, score=7.0), StageEvidence(rank=1, score=0.81))
    assert by_id["b"].best_rank == 1


def test_inputs_are_not_mutated() -> None:
    lexical = [hit("a", metadata={"lang": "en"}), hit("b")]
    vector = [hit("b", snippet="<em>b</em>"), hit("c")]
    rankings = [lexical, vector]
    before = copy.deepcopy(rankings)

    fused = reciprocal_rank_fusion(rankings, weights=[1.0, 2.0])
    collapse_to_documents(fused)

    assert rankings == before
    assert rankings[0] is lexical


def test_equal_scores_break_ties_by_best_rank_before_chunk_id() -> None:
    # k=1: "z" earns 2/(1+1) = 1.0 at rank 1, "a" earns 3/(1+2) = 1.0 at rank 2: an exact tie.
    fused = reciprocal_rank_fusion([[hit("z")], [hit("x"), hit("a")]], k=1, weights=[2.0, 3.0])

    assert scores(fused)["z"] == scores(fused)["a"] == 1.0
    assert ids(fused).index("z") < ids(fused).index("a")


def test_equal_scores_and_ranks_break_ties_by_chunk_id_whatever_the_input_order() -> None:
    forward = reciprocal_rank_fusion([[hit("b")], [hit("a")]])
    backward = reciprocal_rank_fusion([[hit("a")], [hit("b")]])

    assert ids(forward) == ids(backward) == ["a", "b"]


def test_chunk_repeated_in_one_ranking_counts_once_at_its_best_rank() -> None:
    fused = reciprocal_rank_fusion([[hit("a", 3.0), hit("b"), hit("a", 1.0)]])

    assert scores(fused) == pytest.approx({"a": 1 / 61, "b": 1 / 62})
    assert fused[0].evidence == (StageEvidence(rank=1, score=3.0),)


def test_fields_missing_in_one_retriever_are_filled_from_another() -> None:
    lexical = [hit("a", title="Title", text="full text", snippet=None)]
    vector = [hit("a", snippet="<em>full</em> text", metadata={"lang": "en"})]

    (item,) = reciprocal_rank_fusion([lexical, vector])

    assert (item.hit.title, item.hit.text) == ("Title", "full text")
    assert item.hit.snippet == "<em>full</em> text"
    assert item.hit.metadata == {"lang": "en"}


def test_empty_rankings_fuse_to_nothing() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("k", "weights", "message"),
    [
        (0, None, "k must be at least 1"),
        (60, [1.0], "got 1 weights for 2 rankings"),
        (60, [1.0, -0.5], "not negative"),
        (60, [1.0, float("nan")], "finite"),
    ],
)
def test_bad_arguments_are_refused(k: int, weights: list[float] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reciprocal_rank_fusion([[hit("a")], [hit("b")]], k=k, weights=weights)


def test_collapse_keeps_each_documents_best_chunk_at_its_position() -> None:
    lexical = [hit("d1#0"), hit("d2#0"), hit("d1#3"), hit("d3#1")]
    vector = [hit("d1#3"), hit("d3#1"), hit("d2#0")]
    fused = reciprocal_rank_fusion([lexical, vector])
    assert ids(fused) == ["d1#3", "d2#0", "d3#1", "d1#0"]

    documents = collapse_to_documents(fused)

    assert ids(documents) == ["d1#3", "d2#0", "d3#1"]
    assert documents[0].fused_score == pytest.approx(1 / 63 + 1 / 61)
    assert documents[0].evidence == fused[0].evidence


def test_collapse_scores_a_document_by_its_best_chunk_not_the_sum() -> None:
    # d1 has three middling chunks, d2 one strong one: MaxP keeps d2 first.
    fused = reciprocal_rank_fusion([[hit("d2#0"), hit("d1#0"), hit("d1#1"), hit("d1#2")]])

    documents = collapse_to_documents(fused)

    assert [item.hit.doc_id for item in documents] == ["d2", "d1"]
    assert documents[1].fused_score == pytest.approx(1 / 62)


def test_collapse_of_nothing_is_nothing() -> None:
    assert collapse_to_documents([]) == []
