"""Packing ranked chunks into a token budget: merges of overlapping windows, cuts, rank order."""

from __future__ import annotations

from service.search.context import Located, joined, pack, pages
from service.search.fusion import StageEvidence
from service.search.results import SearchHit

DOC = " ".join(f"w{i:03d}" for i in range(200))  # every word is 4 characters and one "token"


def count(text: str) -> int:
    return len(text.split())


def cut(text: str, tokens: int) -> str:
    return " ".join(text.split()[:tokens])


def hit(doc_id: str, score: float, metadata: dict[str, int] | None = None) -> SearchHit:
    evidence = StageEvidence(rank=1, score=score)
    return SearchHit(doc_id, f"{doc_id}#x", "T", "", metadata or {}, score, evidence, evidence, score)


def window(doc_id: str, first_word: int, words: int, score: float, position: int = 0) -> Located:
    start = first_word * 5
    text = DOC[start : start + words * 5 - 1]
    return Located(hit(doc_id, score), text, position, start)


def test_joined_spans() -> None:
    assert joined(0, "abcdef", 4, "efgh") == (0, "abcdefgh")
    assert joined(4, "efgh", 0, "abcdef") == (0, "abcdefgh")
    assert joined(0, "abcdef", 2, "cd") == (0, "abcdef")
    assert joined(0, "abc", 3, "def") == (0, "abcdef")


def test_overlapping_windows_of_a_document_merge_without_repeating_text() -> None:
    ranked = [window("a", 0, 20, 0.9, 0), window("b", 0, 10, 0.8), window("a", 16, 20, 0.7, 1)]
    passages = pack(ranked, 1000, count, cut)
    assert [p.best.id for p in passages] == ["a", "b"]
    assert passages[0].text == DOC[: 36 * 5 - 1] and passages[0].tokens == 36
    assert passages[0].positions == [0, 1] and passages[0].start == 0


def test_a_chunk_between_two_taken_ones_joins_them() -> None:
    ranked = [window("a", 0, 10, 0.9, 0), window("a", 16, 10, 0.8, 2), window("a", 8, 10, 0.7, 1)]
    [passage] = pack(ranked, 1000, count, cut)
    assert passage.text == DOC[: 26 * 5 - 1] and passage.positions == [0, 1, 2]


def test_budget_is_never_exceeded_and_the_first_misfit_is_cut() -> None:
    ranked = [window(f"d{i}", 0, 30, 1 - i / 10) for i in range(5)]
    passages = pack(ranked, 110, count, cut)
    assert [p.tokens for p in passages] == [30, 30, 30, 20] == [count(p.text) for p in passages]
    assert passages[-1].truncated and not passages[0].truncated
    assert [p.best.id for p in passages] == ["d0", "d1", "d2", "d3"]


def test_too_little_left_to_cut_stops_packing() -> None:
    ranked = [window("a", 0, 30, 0.9), window("b", 0, 30, 0.8)]
    assert [p.best.id for p in pack(ranked, 40, count, cut)] == ["a"]


def test_a_merge_over_budget_stops_packing() -> None:
    ranked = [window("a", 0, 30, 0.9, 0), window("a", 25, 30, 0.8, 1)]
    [passage] = pack(ranked, 40, count, cut)
    assert passage.tokens == 30


def test_unlocated_chunks_are_never_merged() -> None:
    ranked = [Located(hit("a", 0.9), "w000 w001"), Located(hit("a", 0.8), "w001 w002")]
    assert len(pack(ranked, 100, count, cut)) == 2


def test_pages_span_the_merged_chunks() -> None:
    first = Located(hit("a", 0.9, {"page": 2, "page_end": 3}), DOC[:50], 0, 0)
    second = Located(hit("a", 0.8, {"page": 3, "page_end": 4}), DOC[40:90], 1, 40)
    [passage] = pack([first, second], 100, count, cut)
    assert pages(passage) == (2, 4)


def test_a_document_is_reassembled_from_its_windows() -> None:
    from service.search.context import reassembled
    from service.search.models import Chunk

    def chunk(position: int, start: int | None, text: str) -> Chunk:
        return Chunk(
            f"d#{position}",
            "d",
            position,
            "",
            text,
            start=start,
            end=None if start is None else start + len(text),
        )

    text = "alpha beta gamma delta epsilon"
    windows = [chunk(0, 0, "alpha beta gamma"), chunk(1, 11, "gamma delta"), chunk(2, 23, "epsilon")]
    assert reassembled(windows) == "alpha beta gamma delta epsilon" == text
    legacy = [chunk(0, None, "alpha beta gamma"), chunk(1, None, "gamma delta epsilon")]
    assert reassembled(legacy) == text
