"""The one write path into a collection, shared by the indexer CLI and the collections API.

Every change follows the journal's protocol: record the intent, write both stores, commit. A change
whose intent outlives its process (kill -9, a store that went away) is redone by `recover()`, which
runs before any new work, so the journal and both stores converge and nothing is lost or duplicated.

One writer at a time per collection: an asyncio lock in this process, then the journal's hold across
processes and replicas. While it writes the stores, a writer renews the lease on its intents; a
replica that dies stops renewing, and `recovering()` (every server runs it) finishes its intents once
the lease has run out: the surviving replica takes over without a restart or a new request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from service.backends.stack import SearchStack
from service.errors import BackendUnavailable, FathomError, InvalidRequest, NotFound, StorageFull
from service.ingest.chunking import Chunker, embedding_text
from service.ingest.documents import Document
from service.ingest.journal import Held, Intent, Journal
from service.ingest.metadata import metadata_problem
from service.search.collections import checked_collection_name
from service.search.fingerprint import EmbedderFingerprint, mismatch, reembed_command, unreadable
from service.search.models import Chunk

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("fathom")

# Document ids per delete request when removing many documents.
DELETE_BATCH = 500
# How long a collection's embedder, once found to match, is not read from the journal again: searches
# check it, and one journal read each would cost more than the check is worth. A collection dropped and
# made again by another embedder meanwhile is refused at most this long after.
EMBEDDER_MATCH_SECONDS = 5.0
# Waiting for a collection another process writes: how long one try waits (a cancelled request waits
# at most this long for its try to end).
HOLD_WAIT = 2.0


class ChangesKept(StorageFull):
    """The disk filled up after the change's intents were recorded: they stay pending and are applied
    once space returns (see IngestWriter._rolled_forward); the message tells the client so."""


class ChangesPending(BackendUnavailable):
    """A store or the journal went away after the change's intents were recorded: they stay pending
    and are applied once it is back (see IngestWriter._rolled_forward); the message tells the client
    so, as a 503 that reads as "failed" would be wrong about a change that later lands."""


@dataclass(slots=True)
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    recovered: int = 0
    # intents parked as failed for good (see Journal.park)
    parked: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)
    # ids of documents a store refused, so they are counted failed rather than added or updated
    refused: list[str] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in ("added", "updated", "unchanged", "deleted", "failed", "recovered", "parked", "chunks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems)
        self.refused.extend(other.refused)

    def log_recovery(self, doing: str, whose: str) -> None:
        """Log a recovery pass: each collection it could not recover, then what it finished and parked."""
        for problem in self.problems:
            log.error("%s: %s", doing, problem)
        if self.recovered or self.parked:
            log.info(
                "finished %d collection changes %s, parked %d that can never succeed",
                self.recovered,
                whose,
                self.parked,
            )

    def summary(self) -> str:
        recovered = f", recovered {self.recovered}" if self.recovered else ""
        parked = f", parked {self.parked} that can never succeed" if self.parked else ""
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, failed {self.failed}{recovered}{parked} ({self.chunks} chunks written)"
        )


def earlier_changes_kept(exc: ChangesKept | ChangesPending, changes: int) -> str:
    """The answer to a request whose collection still holds earlier unfinished changes that cannot be
    finished now: those are kept, but nothing of this request was recorded (it must not read as kept)."""
    return (
        f"{exc.__cause__ or exc}. {changes} earlier unfinished document change(s) in this collection"
        " stay recorded and will be applied once that is possible; nothing of this request was"
        " recorded: send it again then"
    )


def document_json(document: Document) -> str:
    payload = {"id": document.id, "title": document.title, "text": document.text, "meta": document.metadata}
    return json.dumps(payload, ensure_ascii=False, default=str)


def document_from_json(text: str) -> Document:
    raw = json.loads(text)
    return Document(raw["id"], raw["title"], raw["text"], raw["meta"])


def recorded_document(intent: Intent) -> tuple[Document | None, str]:
    """The version a write intent recorded, or None and why it cannot be read back."""
    if intent.document is None:
        return None, "the journal holds no version to write"
    try:
        document = document_from_json(intent.document)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return None, f"the journal's copy cannot be read ({type(exc).__name__}: {exc})"
    # Recorded by a release that did not check metadata first: no store would take it.
    problem = metadata_problem(document.metadata)
    return (document, "") if problem is None else (None, problem)


def split_refused(documents: Sequence[Document]) -> tuple[list[Document], IngestReport]:
    """The documents whose metadata every store takes, and a report failing the others."""
    report = IngestReport()
    accepted = []
    for document in documents:
        problem = metadata_problem(document.metadata)
        if problem is None:
            accepted.append(document)
        else:
            report.failed += 1
            report.refused.append(document.id)
            report.problems.append(f"document {document.id!r}: {problem}")
    return accepted, report


def latest_versions(documents: Sequence[Document]) -> list[Document]:
    """One version per id, the last given: a batch must not write a document twice."""
    return list({document.id: document for document in documents}.values())


@dataclass(frozen=True, slots=True)
class Batch:
    """Documents with their chunks and each chunk's vector, embedded once even if written one by one."""

    documents: Sequence[Document]
    chunks: dict[str, list[Chunk]]
    vectors: dict[str, list[float]]

    def only(self, document: Document) -> Batch:
        return Batch([document], self.chunks, self.vectors)


class IngestWriter:
    """Writes through the journal to the stack's two stores; one change at a time per collection."""

    def __init__(self, stack: SearchStack, journal: Journal, chunker: Chunker) -> None:
        self._stack = stack
        self._journal = journal
        self._chunker = chunker
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Collections whose changes a full disk or a store that went away stopped after their intents
        # were recorded: the background recovery retries them, so they are applied once it can be.
        self._stopped: set[str] = set()
        # Collection -> until when (monotonic) its recorded embedder is known to be this one.
        self._embedder_matched: dict[str, float] = {}

    @property
    def journal(self) -> Journal:
        return self._journal

    @property
    def stack(self) -> SearchStack:
        return self._stack

    async def create_collection(self, collection: str) -> bool:
        """Create the collection in both stores and the journal; False when it existed already.

        The name is checked before either store is touched: one store refusing it while the other
        created it would leave an orphan no API call can delete.
        """
        checked_collection_name(collection)
        await gathered(
            self._stack.lexical.ensure_collection(collection),
            self._stack.vectors.ensure_collection(collection),
        )
        fingerprint = self._stack.embedder.fingerprint.to_json()
        return await self._off_loop(self._journal.add_collection, collection, fingerprint)

    async def stored_embedder(self, collection: str) -> str | None:
        """The fingerprint (JSON) of the embedder the collection's vectors came from, if recorded."""
        return await self._off_loop(self._journal.embedder, collection)

    async def check_embedder(self, collection: str, *, record_missing: bool = False) -> None:
        """EmbedderMismatch when the collection's vectors were written by another embedder than the
        configured one. A collection from before fingerprints were kept has none: with
        `record_missing` (a write) the configured embedder's is recorded, with a warning, since
        nothing tells which embedder wrote it."""
        if self._embedder_matched.get(collection, 0.0) > time.monotonic():
            return
        stored = await self._off_loop(self._journal.embedder, collection)
        current = self._stack.embedder.fingerprint
        if stored is None:
            if record_missing:
                log.warning(
                    'collection "%s" records no embedder (it was made by an earlier release): recording the'
                    " configured one (%s). If its vectors came from another embedder, re-embed it: %s",
                    collection,
                    current.describe(),
                    reembed_command(collection),
                )
                await self._off_loop(self._journal.record_embedder, collection, current.to_json())
            return
        try:
            recorded = EmbedderFingerprint.from_json(stored)
        except (ValueError, TypeError) as exc:
            raise unreadable(collection, str(exc)) from exc
        if recorded != current:
            raise mismatch(collection, recorded, current)
        self._embedder_matched[collection] = time.monotonic() + EMBEDDER_MATCH_SECONDS

    async def drop_collection(self, collection: str) -> None:
        """Marked first, so a drop interrupted half-way is finished by `recover_all()`."""
        await self.require(collection)
        async with self._holding(collection):
            await self._off_loop(self._journal.mark_dropping, collection)
            self._embedder_matched.pop(collection, None)
            await self._drop_stores(collection)
            await self._off_loop(self._journal.forget_collection, collection)

    async def require(self, collection: str, generation: float | None = None) -> float:
        """The live collection's generation; NotFound when it does not exist, or is no longer the
        `generation` a caller began on (dropped, perhaps created again, since)."""
        live = await self._off_loop(self._journal.generation, collection)
        if generation is not None and live != generation:
            raise NotFound(f'collection "{collection}" was deleted while this request ran')
        if live is None:
            raise NotFound(f'collection "{collection}" does not exist')
        return live

    async def recover_all(self) -> IngestReport:
        """Finish every interrupted change in every collection (at start-up).

        One collection that cannot be recovered now (a store down) is logged in the report's problems
        and left for its next write: it never holds up the others.
        """
        return await self._recover_each(await self._off_loop(self._journal.collections))

    async def recover_expired(self) -> IngestReport:
        """Finish what other writers left (intents whose lease ran out, drops nobody is doing), and this
        writer's own changes a full disk or an unreachable store stopped."""
        collections = await self._off_loop(self._journal.collections)
        redo = set(await self._off_loop(self._journal.claimable)) | self._stopped
        return await self._recover_each(
            {name: state for name, state in collections.items() if state == "dropping" or name in redo}
        )

    @asynccontextmanager
    async def recovering(self, every: float) -> AsyncIterator[None]:
        """Run `recover_expired()` every `every` seconds in the background until the block ends."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    report = await self.recover_expired()
                except Exception:  # a background task: nothing else would ever report it
                    log.exception("taking over unfinished collection changes")
                    continue
                report.log_recovery("taking over unfinished collection changes", "another writer left")

        task = asyncio.get_running_loop().create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _recover_each(self, collections: dict[str, str]) -> IngestReport:
        report = IngestReport()
        for collection, state in collections.items():
            try:
                if state == "dropping":
                    await self._finish_drop(collection)
                else:
                    report.add(await self.recover(collection))
            except FathomError as exc:
                report.problems.append(f'collection "{collection}": {exc}')
        return report

    async def _finish_drop(self, collection: str) -> None:
        """A drop left half-done: whoever dropped holds the collection while dropping, so once held
        here and still marked, its dropper is gone."""
        async with self._holding(collection):
            if (await self._off_loop(self._journal.collections)).get(collection) == "dropping":
                await self._drop_stores(collection)
                await self._off_loop(self._journal.forget_collection, collection)

    async def recover(self, collection: str) -> IngestReport:
        """Redo the collection's unfinished intents: delete each document's chunks, then rewrite it.

        Only intents this writer may take over are redone (its own, and those whose lease ran out):
        another live replica's are its to finish. A rewrite a store refuses for good is parked (see
        Journal.park), so it cannot block the collection; a store that is down raises, and the intents
        wait for the next try.
        """
        async with self._holding(collection):
            pending = await self._off_loop(self._journal.claim, collection)
            self._stopped.discard(collection)
            if not pending:
                return IngestReport()
            # Rewrites are embedded again: by the embedder the collection's vectors came from, or none.
            await self.check_embedder(collection)
            # Held from the claim on: embedding the rewrites may take longer than a lease.
            try:
                async with (
                    self._rolled_forward(collection, len(pending)),
                    self._leased(collection, [i.doc_id for i in pending]),
                ):
                    deletes = [i.doc_id for i in pending if i.action == "delete"]
                    await self._delete_in_stores(collection, deletes)
                    await self._off_loop(self._journal.commit_deletes, collection, deletes)
                    writes = [i for i in pending if i.action == "write"]
                    report = await self._rewrite(collection, writes)
            except ChangesKept as exc:
                raise StorageFull(earlier_changes_kept(exc, len(pending))) from exc
            except ChangesPending as exc:
                raise BackendUnavailable(earlier_changes_kept(exc, len(pending))) from exc
            report.recovered = len(pending) - report.parked
            return report

    async def upsert(
        self,
        collection: str,
        documents: Sequence[Document],
        run: int = 0,
        progress: Callable[[int], object] | None = None,
        generation: float | None = None,
    ) -> IngestReport:
        """Write new and changed documents; skip those whose content hash the journal already holds.

        `progress(n)` is told of documents as they are done with: unchanged ones at once, changed ones
        as their last chunk is embedded (from the embedding thread), so a bar moves within a batch.
        Documents whose metadata no store would take are refused before anything is journalled.
        With `generation`, NotFound when the collection was dropped since the caller began.
        """
        async with self._holding(collection):
            await self.require(collection, generation)
            await self.check_embedder(collection, record_missing=True)
            documents, refused = split_refused(latest_versions(documents))
            known = await self._off_loop(self._journal.committed, collection, [d.id for d in documents])
            # Another writer's unfinished change to a document (its lease still running): what the
            # stores hold of it is unknown, so the document is rewritten from scratch, and the other
            # writer, finding its intent replaced, commits nothing.
            unfinished = {i.doc_id for i in await self._off_loop(self._journal.pending, collection)}
            hashes = {d.id: d.content_hash() for d in documents}
            changed = [
                d
                for d in documents
                if d.id in unfinished or d.id not in known or known[d.id].content_hash != hashes[d.id]
            ]
            changed_ids = {d.id for d in changed}
            unchanged = [d.id for d in documents if d.id not in changed_ids]
            await self._off_loop(self._journal.mark_seen, collection, unchanged, run)
            if progress is not None and (unchanged or refused.failed):
                progress(len(unchanged) + refused.failed)
            chunks = await asyncio.to_thread(self._chunk_all, changed)
            # Only a document that shrinks keeps chunks its new version does not overwrite by id; one
            # that repair invalidated (empty hash) may hold anything in a store, so it is cleared too.
            clear_first = [
                d.id
                for d in changed
                if d.id in unfinished
                or (
                    d.id in known
                    and (len(chunks[d.id]) < known[d.id].chunk_count or not known[d.id].content_hash)
                )
            ]
            report = await self._write(collection, changed, chunks, clear_first, run, progress=progress)
            written = [d.id for d in changed if d.id not in set(report.refused)]
            report.added = sum(1 for doc_id in written if doc_id not in known)
            report.updated = len(written) - report.added
            report.unchanged = len(unchanged)
            report.add(refused)
            return report

    async def delete(self, collection: str, doc_ids: Sequence[str]) -> int:
        """Delete documents from both stores and the journal; returns how many the journal held."""
        async with self._holding(collection):
            await self.require(collection)
            held = list(await self._off_loop(self._journal.committed, collection, doc_ids))
            for start in range(0, len(held), DELETE_BATCH):
                part = held[start : start + DELETE_BATCH]
                await self._off_loop(
                    self._journal.begin, collection, [Intent(doc_id, "delete") for doc_id in part]
                )
                async with self._rolled_forward(collection, len(part)):
                    async with self._leased(collection, part):
                        await self._delete_in_stores(collection, part)
                    await self._off_loop(self._journal.commit_deletes, collection, part)
            return len(held)

    async def delete_unseen(self, collection: str, run: int) -> int:
        """Delete the documents that run `run` of the indexer did not see (its --delete-missing)."""
        unseen = await self._off_loop(self._journal.unseen, collection, run)
        return await self.delete(collection, unseen)

    async def purge(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Delete chunks from both stores that no journal entry accounts for (repair only)."""
        async with self._holding(collection):
            for start in range(0, len(doc_ids), DELETE_BATCH):
                await self._delete_in_stores(collection, doc_ids[start : start + DELETE_BATCH])

    async def _rewrite(self, collection: str, intents: Sequence[Intent]) -> IngestReport:
        report = IngestReport()
        documents = []
        for intent in intents:
            document, problem = recorded_document(intent)
            if document is None:
                await self._park(collection, intent.doc_id, problem, report)
            else:
                documents.append(document)
        chunks = await asyncio.to_thread(self._chunk_all, documents)
        # What a store holds of an interrupted write is unknown: clear it all, then write afresh.
        ids = [d.id for d in documents]
        report.add(await self._write(collection, documents, chunks, ids, run=0, park=True))
        return report

    async def _park(self, collection: str, doc_id: str, reason: str, report: IngestReport) -> None:
        """Take the document out of both stores, then park its intent as failed with the reason."""
        await self._delete_in_stores(collection, [doc_id])
        await self._off_loop(self._journal.park, collection, doc_id, reason)
        report.parked += 1
        report.problems.append(f"document {doc_id!r}: parked, it can never be written: {reason}")

    async def _write(
        self,
        collection: str,
        documents: Sequence[Document],
        chunks: dict[str, list[Chunk]],
        clear_first: Sequence[str],
        run: int,
        *,
        progress: Callable[[int], object] | None = None,
        park: bool = False,
    ) -> IngestReport:
        """Embed, then record the intents, write both stores and commit.

        A document a store refuses is counted failed and taken out again, never left as a pending
        intent that every later write would redo; with `park` (recovery, no client to tell) its
        intent is parked for `fathom verify` to report.
        """
        if not documents:
            return IngestReport()
        flat = [chunk for d in documents for chunk in chunks[d.id]]
        texts = [embedding_text(chunk) for chunk in flat]
        on_embedded = None if progress is None else documents_done(flat, progress)
        vectors = await self._stack.embedder.embed_passages(texts, on_embedded)
        batch = Batch(documents, chunks, dict(zip([c.id for c in flat], vectors, strict=True)))
        try:
            return await self._store(collection, batch, clear_first, run)
        except InvalidRequest:
            # A store refused something in the batch: find which documents, one at a time.
            return await self._store_one_by_one(collection, batch, clear_first, run, park=park)

    async def _store(
        self, collection: str, batch: Batch, clear_first: Sequence[str], run: int
    ) -> IngestReport:
        documents = batch.documents
        # A full disk here is a plain StorageFull: nothing is recorded, nothing written.
        await self._off_loop(
            self._journal.begin,
            collection,
            [Intent(d.id, "write", d.content_hash(), document_json(d)) for d in documents],
        )
        ids = {d.id for d in documents}
        flat = [chunk for d in documents for chunk in batch.chunks[d.id]]
        async with self._rolled_forward(collection, len(documents)):
            async with self._leased(collection, list(ids)):
                await self._delete_in_stores(collection, [doc_id for doc_id in clear_first if doc_id in ids])
                await gathered(
                    self._stack.lexical.upsert(collection, flat),
                    self._stack.vectors.upsert(collection, flat, [batch.vectors[c.id] for c in flat]),
                )
            written = [(d.id, d.content_hash(), len(batch.chunks[d.id])) for d in documents]
            await self._off_loop(self._journal.commit_writes, collection, written, run)
        return IngestReport(chunks=len(flat))

    async def _store_one_by_one(
        self, collection: str, batch: Batch, clear_first: Sequence[str], run: int, *, park: bool
    ) -> IngestReport:
        report = IngestReport()
        for document in batch.documents:
            try:
                report.add(await self._store(collection, batch.only(document), clear_first, run))
            except InvalidRequest as exc:
                if park:
                    await self._park(collection, document.id, str(exc), report)
                    continue
                # Refused for good: take out whatever part of it was written, so no half-document stays.
                await self._delete_in_stores(collection, [document.id])
                await self._off_loop(self._journal.commit_deletes, collection, [document.id])
                report.failed += 1
                report.refused.append(document.id)
                report.problems.append(f"document {document.id!r}: {exc}")
        return report

    async def _delete_in_stores(self, collection: str, doc_ids: Sequence[str]) -> None:
        if doc_ids:
            await gathered(
                self._stack.lexical.delete_documents(collection, doc_ids),
                self._stack.vectors.delete_documents(collection, doc_ids),
            )

    async def _drop_stores(self, collection: str) -> None:
        await gathered(
            self._stack.lexical.drop_collection(collection), self._stack.vectors.drop_collection(collection)
        )

    @asynccontextmanager
    async def _holding(self, collection: str) -> AsyncIterator[None]:
        """This collection to ourselves: first among this process's tasks, then across processes."""
        async with self._locks[collection]:
            while (held := await self._hold(collection)) is None:
                pass
            try:
                yield
            finally:
                await self._off_loop(held.release)

    async def _hold(self, collection: str) -> Held | None:
        attempt = asyncio.ensure_future(self._off_loop(self._journal.hold, collection, HOLD_WAIT))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The worker thread may still get the hold: let go of it rather than keep it forever.
            held = await attempt
            if held is not None:
                held.release()
            raise

    @asynccontextmanager
    async def _rolled_forward(self, collection: str, changes: int) -> AsyncIterator[None]:
        """Around the stores' writes and the commit of changes whose intents are recorded.

        A full disk there cannot be undone: the journal holds only the new version, a store may
        already hold part of it in place of the old, and taking that out needs room too. So the
        intents stay pending and the change is rolled forward once space returns (the background
        recovery retries it; so does the next write to the collection), and ChangesKept tells the
        client it will be applied rather than that it failed. A store or journal that is unreachable
        there (killed, restarting) is the same: ChangesPending, applied once it answers again.
        """
        try:
            yield
        except (ChangesKept, ChangesPending):
            raise
        except StorageFull as exc:
            self._stopped.add(collection)
            raise ChangesKept(
                f"{exc}. {changes} document change(s) in it are recorded in the journal and will be"
                " applied once space is freed (by the server in the background, or by the next write"
                " to the collection); they need not be sent again"
            ) from exc
        except BackendUnavailable as exc:
            self._stopped.add(collection)
            raise ChangesPending(
                f"{exc}. {changes} document change(s) in it are recorded in the journal and will be"
                " applied once it is reachable again (by the server in the background, or by the next"
                " write to the collection); they need not be sent again"
            ) from exc

    @asynccontextmanager
    async def _leased(self, collection: str, doc_ids: Sequence[str]) -> AsyncIterator[None]:
        """Renew the lease on these intents every third of it while the block writes the stores.

        A lost lease is not fatal here: the commit after the block fails then (LeaseLost), and a
        renewal the database cannot take now may still be in time on the next try.
        """
        every = self._journal.lease_seconds / 3

        async def renew() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    if not await self._off_loop(self._journal.renew, collection, doc_ids):
                        log.warning(
                            'lost the lease on changes in collection "%s" to another writer', collection
                        )
                        return
                except FathomError as exc:
                    log.warning('could not renew the lease on changes in "%s": %s', collection, exc)

        renewing = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with suppress(asyncio.CancelledError):
                await renewing

    @staticmethod
    async def _off_loop(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A journal call in a worker thread: SQLite may wait (synchronous=FULL, or up to its busy
        timeout while another process holds the lock), and the event loop must not wait with it."""
        return await asyncio.to_thread(call, *args, **kwargs)

    def _chunk_all(self, documents: Sequence[Document]) -> dict[str, list[Chunk]]:
        return {document.id: self._chunker.chunks(document) for document in documents}


async def gathered(*calls: Awaitable[None]) -> None:
    """Run store calls together and wait for all of them, then raise the first failure.

    Plain gather would return on the first error while the other store is still writing.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def documents_done(chunks: Sequence[Chunk], progress: Callable[[int], object]) -> Callable[[int], None]:
    """A per-chunk callback that tells `progress` of each document once its last chunk is embedded."""
    left: dict[str, int] = defaultdict(int)
    for chunk in chunks:
        left[chunk.doc_id] += 1

    def embedded(index: int) -> None:
        doc_id = chunks[index].doc_id
        left[doc_id] -= 1
        if left[doc_id] == 0:
            progress(1)

    return embedded
