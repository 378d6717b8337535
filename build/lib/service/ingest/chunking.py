"""Token-aware chunking: overlapping windows of the embedding model's tokenizer.

A chunk's text is a window of the document's tokens, cut at token boundaries of the original text;
the title travels with every chunk. The window leaves room for the title and the special tokens, so
title + chunk fits the embedding model's limit and nothing is silently truncated.

Each chunk keeps its character offsets in the document, so a citation can point at the exact text.
A document whose metadata holds `page_starts` (the offset where each page begins, as the PDF and
Word readers set it) gives each chunk the 1-based `page` and `page_end` it spans instead.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from service.ingest.documents import Document
from service.search.models import Chunk

SPECIAL_TOKENS = 2  # [CLS] and [SEP]
MIN_WINDOW = 32
# Metadata key of a paged document: character offsets where each page begins, first page at 0.
PAGE_STARTS = "page_starts"


@dataclass(frozen=True, slots=True)
class ChunkingPolicy:
    max_tokens: int = 256
    overlap: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.max_tokens // 2:
            raise ValueError(f"overlap must be between 0 and half of max_tokens ({self.max_tokens // 2})")


def chunk_id(doc_id: str, position: int) -> str:
    """Deterministic, so re-indexing a document overwrites its chunks instead of adding new ones."""
    return f"{doc_id}#{position}"


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees for a chunk: its title, then its text."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


class Chunker:
    def __init__(self, tokenizer: Tokenizer, policy: ChunkingPolicy) -> None:
        self._tokenizer = tokenizer
        self.policy = policy

    def window(self, title: str) -> int:
        """Text tokens per chunk once the title and special tokens have their room."""
        title_tokens = len(self._tokenizer.encode(title, add_special_tokens=False).ids) + 1 if title else 0
        return max(MIN_WINDOW, self.policy.max_tokens - SPECIAL_TOKENS - title_tokens)

    def chunks(self, document: Document) -> list[Chunk]:
        """At least one chunk per document, even an empty one, so every document is findable by id."""
        encoding = self._tokenizer.encode(document.text, add_special_tokens=False)
        spans = word_aligned_windows(encoding.word_ids, self.window(document.title), self.policy.overlap)
        return [
            self._chunk(document, position, encoding.offsets[start:end])
            for position, (start, end) in enumerate(spans)
        ]

    def _chunk(self, document: Document, position: int, offsets: list[tuple[int, int]]) -> Chunk:
        start, end = (offsets[0][0], offsets[-1][1]) if offsets else (0, len(document.text))
        return Chunk(
            id=chunk_id(document.id, position),
            doc_id=document.id,
            position=position,
            title=document.title,
            text=document.text[start:end],
            metadata=chunk_metadata(document.metadata, start, end),
            start=start,
            end=end,
        )


def chunk_metadata(metadata: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """The document's metadata; for a paged document, the pages the chunk spans instead of the layout."""
    starts = metadata.get(PAGE_STARTS)
    if not isinstance(starts, list) or not all(isinstance(s, int) for s in starts) or not starts:
        return metadata
    kept = {key: value for key, value in metadata.items() if key != PAGE_STARTS}
    last = max(start, end - 1)
    return {**kept, "page": page_at(starts, start), "page_end": page_at(starts, last)}


def page_at(page_starts: list[int], offset: int) -> int:
    """The 1-based page holding character `offset`."""
    return max(1, bisect_right(page_starts, offset))


def word_aligned_windows(word_ids: list[int | None], window: int, overlap: int) -> list[tuple[int, int]]:
    """Token spans [start, end) of at most `window` tokens, overlapping by about `overlap`.

    Spans never split a word into pieces (unless one word is longer than a window): a chunk that
    began with "##47" would neither read well nor embed well.
    """
    count = len(word_ids)
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + window, count)
        while start < end < count and _inside_word(word_ids, end) and end - 1 > start:
            end -= 1
        if end <= start:  # one word longer than the window: cut it
            end = min(start + window, count)
        spans.append((start, end))
        if end >= count:
            return spans
        next_start = max(end - overlap, start + 1)
        while next_start > start + 1 and _inside_word(word_ids, next_start):
            next_start -= 1
        start = next_start


def _inside_word(word_ids: list[int | None], index: int) -> bool:
    """True when token `index` continues the word of the token before it."""
    return word_ids[index] is not None and word_ids[index] == word_ids[index - 1]
