"""Opening the write path outside the server: stores, embedder and journal together (CLI, tests, bench)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.backends.stack import open_stack
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.writer import IngestWriter
from service.settings import Settings
from service.state.stores import open_journal


@asynccontextmanager
async def open_writer(
    settings: Settings, policy: ChunkingPolicy | None = None
) -> AsyncIterator[IngestWriter]:
    """An IngestWriter on the configured stores; everything closed on exit.

    Raises StoreLocked when an embedded store is held by another process, such as `fathom serve`.
    """
    async with open_stack(settings) as stack:
        journal = open_journal(settings)
        try:
            yield IngestWriter(stack, journal, Chunker(stack.embedder.tokenizer, policy or ChunkingPolicy()))
        finally:
            journal.close()
