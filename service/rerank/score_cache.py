"""Rerank scores kept by (model, query, passage), so a repeated search or its next page scores nothing again.

A cross-encoder's score is a function of the pair alone (the int8 recipe scales each text on its own,
so batching does not change it): a score computed once is the score. The cache is a bounded LRU of
entries; each holds a 16-byte digest of the model, query and passage and a float, about 150 bytes with
Python's overheads, so the default 100,000 entries stay under 16 MiB.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

from service.search.protocols import Reranker


def _no_count(count: int) -> None:
    del count


class ScoreCache:
    """A bounded LRU of rerank scores; `on_hit` and `on_miss` count lookups (Prometheus counters)."""

    def __init__(
        self,
        max_entries: int,
        *,
        on_hit: Callable[[int], None] = _no_count,
        on_miss: Callable[[int], None] = _no_count,
    ) -> None:
        self._max_entries = max_entries
        self._scores: OrderedDict[bytes, float] = OrderedDict()
        self._on_hit = on_hit
        self._on_miss = on_miss

    def __len__(self) -> int:
        return len(self._scores)

    def get(self, keys: Sequence[bytes]) -> list[float | None]:
        """The cached score of each key, None where there is none; found ones become the most recent."""
        found: list[float | None] = []
        for key in keys:
            score = self._scores.get(key)
            if score is not None:
                self._scores.move_to_end(key)
            found.append(score)
        hits = sum(score is not None for score in found)
        self._on_hit(hits)
        self._on_miss(len(found) - hits)
        return found

    def put(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        if self._max_entries <= 0:
            return
        for key, score in zip(keys, scores, strict=False):
            self._scores[key] = score
            self._scores.move_to_end(key)
        while len(self._scores) > self._max_entries:
            self._scores.popitem(last=False)


def pair_key(model: str, query: str, passage: str) -> bytes:
    """A digest of the pair: the cache holds no text, and a key's size does not grow with the passage."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (model, query, passage):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(8, "little"))  # so ("ab", "c") and ("a", "bc") differ
        digest.update(encoded)
    return digest.digest()


class CachedReranker:
    """A Reranker that answers from the cache what it can and asks `inner` only for the rest.

    With a budget, `inner` may score only a prefix of the passages it is sent (the uncached ones);
    the answer is then the longest prefix of `passages` whose scores are all known, as the Reranker
    protocol asks, and whatever `inner` did score is kept for the next search.
    """

    def __init__(self, inner: Reranker, model: str, cache: ScoreCache) -> None:
        self._inner = inner
        self._model = model
        self._cache = cache

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        keys = [pair_key(self._model, query, passage) for passage in passages]
        known = self._cache.get(keys)
        missing = [index for index, score in enumerate(known) if score is None]
        if missing:
            fresh = await self._inner.score(query, [passages[i] for i in missing], budget_ms=budget_ms)
            fresh = fresh[: len(missing)]
            self._cache.put([keys[i] for i in missing], fresh)
            for index, value in zip(missing, fresh, strict=False):
                known[index] = value
        prefix: list[float] = []
        for score in known:
            if score is None:
                break
            prefix.append(score)
        return prefix
