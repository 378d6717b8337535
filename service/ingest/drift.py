"""Drift between the journal and the two stores: finding it (`fathom verify`) and repairing it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from service.ingest.journal import Intent
from service.ingest.writer import IngestReport, IngestWriter

# How many drifting documents a report names before it only counts the rest.
SHOWN = 20


@dataclass(frozen=True, slots=True)
class Counts:
    journal: int | None
    lexical: int | None
    vector: int | None

    def __str__(self) -> str:
        shown = ["-" if n is None else str(n) for n in (self.journal, self.lexical, self.vector)]
        return f"journal {shown[0]}, lexical {shown[1]}, vector {shown[2]} chunks"


@dataclass(slots=True)
class Drift:
    collection: str
    documents: int = 0
    pending: list[Intent] = field(default_factory=list)
    # intents parked as failed for good: the document is in neither store; --repair removes them
    parked: list[Intent] = field(default_factory=list)
    # documents whose chunk counts differ between the journal and a store, or that only a store holds
    mismatched: dict[str, Counts] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.pending and not self.mismatched and not self.parked

    def lines(self) -> list[str]:
        if self.clean:
            return [f'collection "{self.collection}": {self.documents} documents, journal and stores agree']
        lines = [
            f'collection "{self.collection}": {len(self.pending)} unfinished changes, '
            f"{len(self.parked)} failed changes, "
            f"{len(self.mismatched)} documents differ between journal and stores"
        ]
        lines += [f"  unfinished {i.action} of {i.doc_id!r}" for i in self.pending[:SHOWN]]
        lines += [f"  failed {i.action} of {i.doc_id!r}: {i.reason}" for i in self.parked[:SHOWN]]
        lines += [f"  {doc_id!r}: {counts}" for doc_id, counts in list(self.mismatched.items())[:SHOWN]]
        hidden = sum(max(0, len(shown) - SHOWN) for shown in (self.pending, self.parked, self.mismatched))
        return lines + ([f"  ... and {hidden} more"] if hidden else [])


@dataclass(frozen=True, slots=True)
class StoredCounts:
    """Chunks per document id in the journal and in each store, and the journal's unfinished changes."""

    journal: dict[str, int]
    lexical: dict[str, int]
    vector: dict[str, int]
    pending: list[Intent]

    def stores(self) -> dict[str, dict[str, int]]:
        return {"journal": self.journal, "lexical": self.lexical, "vector": self.vector}


async def stored_counts(writer: IngestWriter, collection: str) -> StoredCounts:
    """Read in bulk from the three places a collection lives, the journal off the event loop: one
    locked by another process must not stall /healthz."""
    lexical, vector = await asyncio.gather(
        writer.stack.lexical.chunk_counts(collection), writer.stack.vectors.chunk_counts(collection)
    )
    journal = await asyncio.to_thread(writer.journal.chunk_counts, collection)
    pending = await asyncio.to_thread(writer.journal.pending, collection)
    return StoredCounts(journal, lexical, vector, pending)


async def find_drift(writer: IngestWriter, collection: str) -> Drift:
    """Compare per-document chunk counts: journal, lexical store, vector store."""
    await writer.require(collection)
    stored = await stored_counts(writer, collection)
    journal, lexical, vector = stored.journal, stored.lexical, stored.vector
    drift = Drift(
        collection,
        documents=len(journal),
        pending=stored.pending,
        parked=await asyncio.to_thread(writer.journal.parked, collection),
    )
    for doc_id in journal.keys() | lexical.keys() | vector.keys():
        counts = Counts(journal.get(doc_id), lexical.get(doc_id), vector.get(doc_id))
        if not counts.journal == counts.lexical == counts.vector:
            drift.mismatched[doc_id] = counts
    return drift


async def repair(writer: IngestWriter, collection: str) -> tuple[IngestReport, Drift]:
    """Redo unfinished changes, remove parked ones and chunks no journal entry accounts for, then
    check again.

    A parked change's document is already out of both stores; removing the intent only forgets it.
    A document the journal holds but a store lacks cannot be rebuilt without its source: its hash is
    forgotten so the next `fathom index` of the source rewrites it, and it stays in the final drift.
    """
    report = await writer.recover(collection)
    report.parked = writer.journal.discard_parked(collection)
    drift = await find_drift(writer, collection)
    orphans = [doc_id for doc_id, counts in drift.mismatched.items() if counts.journal is None]
    await writer.purge(collection, orphans)
    stale = [doc_id for doc_id, counts in drift.mismatched.items() if counts.journal is not None]
    writer.journal.invalidate(collection, stale)
    report.deleted += len(orphans)
    return report, await find_drift(writer, collection)
