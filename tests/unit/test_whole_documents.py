"""A document's one lexical entry is its text put back together from its chunks."""

from __future__ import annotations

from service.backends.whole_documents import document_entries, joined_text
from service.search.models import Chunk

TEXT = "Boundary layers thicken downstream; transition follows at high Reynolds numbers."


def windows(text: str, cuts: list[tuple[int, int]], doc_id: str = "d") -> list[Chunk]:
    return [
        Chunk(id=f"{doc_id}#{i}", doc_id=doc_id, position=i, title="T", text=text[a:b], start=a, end=b)
        for i, (a, b) in enumerate(cuts)
    ]


def test_overlapping_windows_give_the_text_once() -> None:
    # Overlaps, and a cut inside a word ("thick|en"): the word comes back whole.
    assert joined_text(windows(TEXT, [(0, 21), (16, 50), (40, len(TEXT))])) == TEXT


def test_a_gap_between_windows_becomes_a_space() -> None:
    assert joined_text(windows(TEXT, [(0, 15), (16, 22)])) == "Boundary layers thicke"


def test_chunks_without_offsets_are_joined_whole() -> None:
    old = [
        Chunk(id="d#0", doc_id="d", position=0, title="", text="a b"),
        Chunk(id="d#1", doc_id="d", position=1, title="", text="b c"),
    ]
    assert joined_text(old) == "a b b c"


def test_one_entry_per_document_in_position_order_with_title_and_metadata() -> None:
    first = windows(TEXT, [(0, 30), (25, len(TEXT))], "a")
    second = [
        Chunk(
            id="b#0", doc_id="b", position=0, title="Other", text="kites", metadata={"k": 1}, start=0, end=5
        )
    ]
    entries = document_entries([first[1], *second, first[0]])
    assert [(e.id, e.doc_id, e.title, e.text, e.metadata) for e in entries] == [
        ("a", "a", "T", TEXT, {}),
        ("b", "b", "Other", "kites", {"k": 1}),
    ]
