"""Packing ranked passages into a token budget for a chatbot's prompt: merged, cited, never over budget.

Passages are taken best first. One that overlaps or touches a passage already taken from the same
document (consecutive chunk windows share tokens) is merged into it, so no text is sent twice; the
merged passage keeps the place of its best part. The first passage that does not fit whole is cut
at a word boundary to what is left of the budget (when that is worth sending) and packing stops, so
the budget goes to the best passages, in rank order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from service.search.models import Chunk
from service.search.results import SearchHit

# A cut passage shorter than this is more noise than context: stop without it.
MIN_CUT_TOKENS = 16

Count = Callable[[str], int]
# (text, tokens) -> the longest prefix of text, cut at a word boundary, of at most that many tokens
Cut = Callable[[str, int], str]


@dataclass(frozen=True, slots=True)
class Located:
    """A ranked passage and where its text sits in its document (offsets None when not stored)."""

    hit: SearchHit
    text: str
    position: int | None = None
    start: int | None = None

    @property
    def end(self) -> int | None:
        return None if self.start is None else self.start + len(self.text)


@dataclass(slots=True)
class Passage:
    """One passage of the context: the best hit it holds, its text and the chunks it was merged from."""

    best: SearchHit
    text: str
    tokens: int
    start: int | None
    members: list[Located] = field(default_factory=list)
    truncated: bool = False

    @property
    def end(self) -> int | None:
        return None if self.start is None else self.start + len(self.text)

    @property
    def positions(self) -> list[int]:
        return sorted({m.position for m in self.members if m.position is not None})

    def touches(self, other: Located | Passage) -> bool:
        """Same document, both located, and the two spans overlap or meet."""
        other_id = other.hit.id if isinstance(other, Located) else other.best.id
        if other_id != self.best.id or self.truncated or self.start is None or other.start is None:
            return False
        assert self.end is not None and other.end is not None
        return other.start <= self.end and self.start <= other.end


def joined(start: int, text: str, other_start: int, other_text: str) -> tuple[int, str]:
    """The union of two overlapping or touching spans of one document's text."""
    if other_start < start:
        start, text, other_start, other_text = other_start, other_text, start, text
    end = start + len(text)
    other_end = other_start + len(other_text)
    return start, text if other_end <= end else text + other_text[end - other_start :]


def located(hit: SearchHit, chunk: Chunk | None) -> Located:
    """The hit at its stored place: the chunk's text, position and offsets (None when not stored)."""
    if chunk is None:
        return Located(hit, hit.text)
    # Offsets describe the stored text; chunks written before offsets were kept have none.
    start = (
        chunk.start if chunk.end is not None and chunk.end - (chunk.start or 0) == len(chunk.text) else None
    )
    return Located(hit, chunk.text, chunk.position, start)


def pack(located: Sequence[Located], max_tokens: int, count: Count, cut: Cut) -> list[Passage]:
    """The passages to send, best first, whose token counts add up to at most `max_tokens`."""
    passages: list[Passage] = []
    for item in located:
        used = sum(p.tokens for p in passages)
        target = next((p for p in passages if p.touches(item)), None)
        if target is None:
            passage = fitted(item, max_tokens - used, count, cut)
            if passage is None:
                break
            passages.append(passage)
            if passage.truncated:
                break
            continue
        grown = bridged(passages, merged_into(target, [item], count), count)
        if sum(p.tokens for p in grown) > max_tokens:
            break
        passages = grown
    return passages


def bridged(passages: list[Passage], grown: Passage, count: Count) -> list[Passage]:
    """The passages with `grown` in its place, and any later passage it now reaches folded into it.

    Chunks 3 and 5 of a document may be taken apart; chunk 4 then joins them into one passage.
    """
    index = next(i for i, p in enumerate(passages) if p.best is grown.best)
    rest = [p for p in passages[index + 1 :] if not grown.touches(p)]
    for reached in (p for p in passages[index + 1 :] if grown.touches(p)):
        grown = merged_into(grown, reached.members, count, reached.text, reached.start)
    return [*passages[:index], grown, *rest]


def fitted(item: Located, budget: int, count: Count, cut: Cut) -> Passage | None:
    """The passage whole when it fits, else cut to the budget, else None when too little is left."""
    tokens = count(item.text)
    if tokens <= budget:
        return Passage(item.hit, item.text, tokens, item.start, [item])
    if budget < MIN_CUT_TOKENS:
        return None
    text = cut(item.text, budget)
    return Passage(item.hit, text, count(text), item.start, [item], truncated=True)


def merged_into(
    passage: Passage,
    members: list[Located],
    count: Count,
    text: str | None = None,
    start: int | None = None,
) -> Passage:
    """The passage grown by a span (one chunk's, unless given) it lacks; tokens recounted when it grew."""
    text = members[0].text if text is None else text
    start = members[0].start if start is None else start
    assert passage.start is not None and start is not None
    new_start, new_text = joined(passage.start, passage.text, start, text)
    tokens = passage.tokens if new_text == passage.text else count(new_text)
    return replace(
        passage, text=new_text, start=new_start, tokens=tokens, members=[*passage.members, *members]
    )


def pages(passage: Passage) -> tuple[int | None, int | None]:
    """First and last page the passage spans, from its chunks' metadata; None for unpaged documents."""
    firsts = [m.hit.metadata.get("page") for m in passage.members]
    lasts = [m.hit.metadata.get("page_end", m.hit.metadata.get("page")) for m in passage.members]
    first = [p for p in firsts if isinstance(p, int)]
    last = [p for p in lasts if isinstance(p, int)]
    return (min(first) if first else None), (max(last) if last else None)


def reassembled(chunks: Sequence[Chunk]) -> str:
    """A document's text from its chunks in position order, each overlap once.

    With offsets the text lines up with the citations' offsets: whitespace the chunker left between
    windows comes back as spaces. Chunks stored without offsets are joined on their longest overlap.
    """
    text = ""
    for chunk in chunks:
        if chunk.start is None:
            text = overlap_joined(text, chunk.text)
            continue
        text = text.ljust(chunk.start)
        text = joined(0, text, chunk.start, chunk.text)[1]
    return text


def overlap_joined(text: str, following: str) -> str:
    """`text` then `following` without the longest start of `following` that `text` already ends with."""
    for size in range(min(len(text), len(following)), 0, -1):
        if text.endswith(following[:size]):
            return text + following[size:]
    return f"{text} {following}" if text else following
