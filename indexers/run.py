"""Loading documents into both stores: chunk, embed in batches, write lexical and vector sides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from indexers.chunking import Chunker, embedding_text
from indexers.documents import Document
from indexers.sources import Record, SourceProblem
from service.backends.stack import SearchStack
from service.search.models import Chunk

DOCUMENTS_PER_BATCH = 64


@dataclass(slots=True)
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks: int = 0
    problems: list[SourceProblem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, failed {self.failed} ({self.chunks} chunks written)"
        )


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


async def write_chunks(stack: SearchStack, collection: str, chunks: list[Chunk]) -> None:
    """Embed off the event loop, then write both stores at once."""
    vectors = await asyncio.to_thread(stack.embedder.embed_passages_sync, [embedding_text(c) for c in chunks])
    await asyncio.gather(
        stack.lexical.upsert(collection, chunks),
        stack.vectors.upsert(collection, chunks, vectors),
    )


async def index_records(
    stack: SearchStack,
    collection: str,
    records: Iterable[Record],
    chunker: Chunker,
    on_progress: Callable[[int], object] = lambda _: None,
) -> IndexReport:
    """Stream records in batches into the collection, creating it in both stores if needed."""
    await asyncio.gather(
        stack.lexical.ensure_collection(collection), stack.vectors.ensure_collection(collection)
    )
    report = IndexReport()
    for batch in batched(records, DOCUMENTS_PER_BATCH):
        documents = [r for r in batch if isinstance(r, Document)]
        report.problems.extend(r for r in batch if isinstance(r, SourceProblem))
        report.failed += len(batch) - len(documents)
        chunks = [chunk for document in documents for chunk in chunker.chunks(document)]
        if chunks:
            await write_chunks(stack, collection, chunks)
        report.added += len(documents)
        report.chunks += len(chunks)
        on_progress(len(batch))
    return report
