"""One entry per document for the lexical stores, put together from the chunks they are given.

BM25 ranks documents on their whole text (term frequencies and length normalisation of the document,
as textbook BM25 does), while chunks keep supplying snippets and passages. The stores receive chunks
only; every chunk of a document comes in the same write (the ingest writer writes a document whole),
so its text can be joined again from them.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.search.models import Chunk


def document_entries(chunks: Sequence[Chunk]) -> list[Chunk]:
    """One entry per document the chunks belong to, holding its whole text: the chunks joined at
    their offsets, so the text their windows overlap on counts once. Every chunk of a document
    comes in the same write (the ingest writer writes a document whole)."""
    grouped: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        grouped.setdefault(chunk.doc_id, []).append(chunk)
    return [
        Chunk(
            id=doc_id,
            doc_id=doc_id,
            position=0,
            title=parts[0].title,
            text=joined_text(sorted(parts, key=lambda chunk: chunk.position)),
            metadata=parts[0].metadata,
        )
        for doc_id, parts in grouped.items()
    ]


def joined_text(chunks: Sequence[Chunk]) -> str:
    """The document's text from its chunks in order: each one's part past the text already covered
    (a window may end inside a word, so an overlapping piece continues it without a space); chunks
    without offsets (written by an older release) are joined whole."""
    text = ""
    covered = 0
    for chunk in chunks:
        if chunk.start is None or chunk.end is None:
            text = f"{text} {chunk.text}" if text else chunk.text
        elif chunk.end > covered:
            gap = " " if text and chunk.start > covered else ""
            text += gap + chunk.text[max(covered - chunk.start, 0) :]
            covered = chunk.end
    return text
