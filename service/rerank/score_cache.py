"""Rerank scores kept by (model, query, passage), so a repeated search or its next page scores nothing again.

A cross-encoder's score is a function of the pair alone (the int8 recipe scales each text on its own,
so batching does not change it): a score computed once is the score. The cache is a bounded LRU of
entries; each holds a 16-byte digest of the model, query and passage and a float, about 150 bytes with
Python's overheads, so the default 100,000 entries stay under 16 MiB.
"""

from __future__ import annotations

import asyncio
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

    Pairs already being scored for another search (the same query and passage at the same time, as
    identical searches arriving together have) are awaited rather than scored twice. With a budget,
    `inner` may score only a prefix of the passages it is sent (the uncached ones); the answer is then
    the longest prefix of `passages` whose scores are all known, as the Reranker protocol asks, and
    whatever `inner` did score is kept for the next search. Without a budget every score is owed: a
    pair another search left unscored (its budget ran out, it failed) is then scored here.
    """

    def __init__(self, inner: Reranker, model: str, cache: ScoreCache) -> None:
        self._inner = inner
        self._model = model
        self._cache = cache
        self._pending: dict[bytes, asyncio.Future[float | None]] = {}

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        keys = [pair_key(self._model, query, passage) for passage in passages]
        known = self._cache.get(keys)
        await self._fill(query, passages, keys, known, budget_ms, share=True)
        if budget_ms is None and None in known:
            await self._fill(query, passages, keys, known, None, share=False)
        prefix: list[float] = []
        for score in known:
            if score is None:
                break
            prefix.append(score)
        return prefix

    async def _fill(
        self,
        query: str,
        passages: Sequence[str],
        keys: list[bytes],
        known: list[float | None],
        budget_ms: float | None,
        *,
        share: bool,
    ) -> None:
        """Fill the gaps of `known`: by `inner` for pairs nobody is scoring, awaited for the others."""
        missing = [i for i, score in enumerate(known) if score is None]
        theirs = {i: self._pending[keys[i]] for i in missing if share and keys[i] in self._pending}
        mine = [i for i in missing if i not in theirs]
        if mine:
            await self._score_own(query, passages, keys, known, mine=mine, budget_ms=budget_ms)
        for index, future in theirs.items():
            known[index] = await asyncio.shield(future)

    async def _score_own(
        self,
        query: str,
        passages: Sequence[str],
        keys: list[bytes],
        known: list[float | None],
        *,
        mine: list[int],
        budget_ms: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        futures = {keys[i]: loop.create_future() for i in mine if keys[i] not in self._pending}
        self._pending.update(futures)
        fresh: list[float] = []
        try:
            fresh = await self._inner.score(query, [passages[i] for i in mine], budget_ms=budget_ms)
            fresh = fresh[: len(mine)]
            self._cache.put([keys[i] for i in mine], fresh)
            for index, value in zip(mine, fresh, strict=False):
                known[index] = value
        finally:
            # Waiters see None for what was not scored (budget, failure, cancellation) and act on it.
            scored = dict(zip((keys[i] for i in mine), fresh, strict=False))
            for key, future in futures.items():
                self._pending.pop(key, None)
                future.set_result(scored.get(key))
