"""Charging search units to the calling key; only successful requests are billed."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.auth.keys import ApiKey, Keys

DOCUMENTS_PER_SEARCH_UNIT = 100


def rerank_search_units(documents: int) -> int:
    """As Cohere bills: one unit per query per 100 documents, rounded up (document writes too)."""
    return max(1, math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT))


def embedding_search_units(inputs: int) -> int:
    """Embedding is billed as reranking is: one unit per 100 texts, rounded up."""
    return rerank_search_units(inputs)


@asynccontextmanager
async def billed(keys: Keys, key: ApiKey | None, units: int) -> AsyncIterator[None]:
    """Charge before the work (402 when short), so concurrent requests cannot overdraw the quota.

    The SQLite writes run off the event loop: a key store held by another process must not stall
    every other request.
    """
    if key is None:  # auth is off
        yield
        return
    await asyncio.to_thread(keys.charge, key.name, units)
    try:
        yield
    except BaseException:  # a request that fails, for any reason, is not billed
        await asyncio.shield(asyncio.to_thread(keys.refund, key.name, units))
        raise
