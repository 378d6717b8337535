"""The relevance floor of vector hits: how similar a query must be to a passage to count as close.

Cosine similarity has no fixed meaning: each embedding model spreads its scores differently, and the
same model sits higher or lower on another corpus. So the floor is measured, per collection, from the
similarity the model gives queries that mean nothing there: strings of random letters (what a visitor
mashing keys sends, `qqxzv`, `asdkjh qwe`), whose nearest passage is as close as chance gets. The
floor is a high percentile of those nearest-passage scores: a vector hit below it is no closer than
noise is, and, when the query matched nothing lexically either, it is not a result.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import string
from collections.abc import Sequence
from typing import Final, Literal

from service.search.protocols import Embedder, VectorIndex

AUTO: Final = "auto"
OFF: Final = "off"
FloorSetting = float | Literal["auto", "off"]
# Fixed, so every process measures a collection with the same probes and finds the same floor.
PROBE_SEED = 20261203

log = logging.getLogger(__name__)


def nonsense_queries(count: int, seed: int = PROBE_SEED) -> list[str]:
    """`count` queries of one to three words of random lower-case letters (3 to 9 each)."""
    rng = random.Random(seed)
    return [
        " ".join(
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
            for _ in range(rng.randint(1, 3))
        )
        for _ in range(count)
    ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default); 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class VectorFloors:
    """Each collection's measured floor, found on its first search and kept for the process's life.

    Searches arriving while it is measured wait for the one measurement. A collection with no vectors,
    or one the store cannot search now, gets no floor, and is measured again on its next search.
    """

    def __init__(self, embedder: Embedder, vectors: VectorIndex, *, probes: int, share: float) -> None:
        self._embedder = embedder
        self._vectors = vectors
        self._queries = nonsense_queries(probes)
        self._share = share
        self._floors: dict[str, float] = {}
        self._measuring: dict[str, asyncio.Task[float | None]] = {}

    async def floor(self, collection: str) -> float | None:
        if collection in self._floors:
            return self._floors[collection]
        task = self._measuring.get(collection)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._measure(collection))
            self._measuring[collection] = task
            task.add_done_callback(lambda _: self._measuring.pop(collection, None))
        floor = await asyncio.shield(task)
        if floor is not None:
            self._floors[collection] = floor
        return floor

    def forget(self, collection: str) -> None:
        """Measure again on the next search (the collection was dropped or rebuilt)."""
        self._floors.pop(collection, None)

    async def _measure(self, collection: str) -> float | None:
        nearest: list[float] = []
        try:
            for query in self._queries:
                vector = await self._embedder.embed_query(query)
                hits = await self._vectors.search(collection, vector, limit=1)
                nearest.extend(hit.score for hit in hits[:1])
        except Exception as exc:  # measured again on the next search; the search itself goes on
            log.warning("could not measure the vector floor of %s: %s", collection, exc)
            return None
        if not nearest:
            return None
        floor = percentile(nearest, self._share / 100)
        log.info("vector floor of %s: %.4f (%d probes)", collection, floor, len(nearest))
        return floor
