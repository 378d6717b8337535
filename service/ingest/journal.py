"""The ingest journal: what each collection holds, and the writes begun but not yet confirmed.

`documents` rows are committed state: both stores acknowledged exactly `chunk_count` chunks of that
content. An intent is recorded, in its own transaction, before either store is touched, and is removed
in the same transaction that commits the new state; so after a crash at any point, every document whose
stores may differ from its committed row still has an intent, and redoing the intent (delete the
document's chunks, write the recorded version) converges.

Intents have an owner (the writing process, see `replica_id`) and a lease the owner renews while it
writes. Another process redoes them only once the lease has run out (or, on one machine, once the owner
is provably dead): `claim` hands them over, and the owner's commit then fails (`LeaseLost`), so a slow
ex-owner never commits a change twice or over a newer one. Writers of one collection take turns through
`hold`, across processes (and, with PostgreSQL, across replicas).

An intent a store refuses for good (the recorded version can never be written) is parked: its state
becomes 'failed' with the reason, the document is taken out of both stores and the committed state,
and later writes no longer redo it. `fathom verify` reports parked intents; `--repair` removes them.

Two adapters implement the protocol: SQLite under data_dir (journal_sqlite.py, the embedded default)
and PostgreSQL shared by replicas (journal_postgres.py); tests/integration/test_journal_contract.py
runs one suite over both.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from service.errors import BackendUnavailable


@dataclass(frozen=True, slots=True)
class Intent:
    doc_id: str
    action: str
    content_hash: str | None = None
    document: str | None = None
    # why a parked intent can never succeed
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    content_hash: str
    chunk_count: int


class LeaseLost(BackendUnavailable):
    """Another process took over this write's intents (this one was too slow to renew its lease):
    it finishes them, so this one must not commit. The client retries."""


class Held(Protocol):
    """A collection held for writing; `release()` lets the next writer in."""

    def release(self) -> None: ...


def replica_id(name: str = "") -> str:
    """Who owns the intents a journal records: the replica's name (`[state] replica_name`, else the
    host name), the pid and a random part. Unique per opened journal, so the CLI next to a server with
    the same config, or a restarted process with a dead one's pid, is never taken for the other."""
    return f"{name or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Journal(Protocol):
    """Journal state; each method is one short transaction, safe from any thread, blocking (callers on
    the event loop run them in a worker thread)."""

    @property
    def owner(self) -> str: ...

    @property
    def lease_seconds(self) -> float: ...

    def close(self) -> None: ...

    # --- collections ------------------------------------------------------------------------------

    def add_collection(self, name: str, embedder: str | None = None) -> bool:
        """Register the collection with the fingerprint of the embedder that writes its vectors (JSON,
        see service.search.fingerprint); False when it was already there (its fingerprint unchanged)."""
        ...

    def embedder(self, name: str) -> str | None:
        """The collection's embedder fingerprint; None for a collection made before they were kept."""
        ...

    def record_embedder(self, name: str, embedder: str) -> None:
        """Set the collection's embedder fingerprint (for one that has none yet)."""
        ...

    def generation(self, name: str) -> float | None:
        """When the live collection of that name was created (its identity); None unless it is ready.

        A collection dropped and created again has a new generation, so work begun on the old one can
        tell it is gone.
        """
        ...

    def collections(self) -> dict[str, str]:
        """Name -> state ('ready', or 'dropping' while its stores are being dropped)."""
        ...

    def mark_dropping(self, name: str) -> None: ...

    def forget_collection(self, name: str) -> None: ...

    def hold(self, collection: str, wait: float = 0.0) -> Held | None:
        """Hold the collection for writing, waiting up to `wait` seconds; None when another writer
        still holds it. A holder that dies lets go (a file lock on one machine, a database session's
        advisory lock). PostgreSQL queues waiters, so a writer that lets go and asks again at once
        goes behind a replica already waiting."""
        ...

    # --- documents --------------------------------------------------------------------------------

    def committed(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Committed]: ...

    def mark_seen(self, collection: str, doc_ids: Sequence[str], run: int) -> None: ...

    def unseen(self, collection: str, run: int) -> list[str]: ...

    def chunk_counts(self, collection: str) -> dict[str, int]: ...

    def document_count(self, collection: str) -> int: ...

    def invalidate(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Forget the content hash, so the next run from the source rewrites these documents."""
        ...

    # --- intents ----------------------------------------------------------------------------------

    def begin(self, collection: str, intents: Sequence[Intent]) -> None:
        """Record the intents, all or none, owned by this process and leased, before any store is
        touched (an older intent for the same document is replaced)."""
        ...

    def renew(self, collection: str, doc_ids: Sequence[str]) -> bool:
        """Extend the lease of those of these intents still ours; False when another owner has taken
        any of them over (ones committed meanwhile are simply gone)."""
        ...

    def claim(self, collection: str) -> list[Intent]:
        """Take over the pending intents this process may redo now: its own, and those whose owner's
        lease ran out (or whose owner is known dead); they become ours, freshly leased."""
        ...

    def claimable(self) -> list[str]:
        """Collections where `claim` would take something over from another owner now."""
        ...

    def commit_writes(self, collection: str, written: Sequence[tuple[str, str, int]], run: int) -> None:
        """Both stores hold these (doc_id, content_hash, chunk_count): make it the committed state.
        LeaseLost, and nothing committed, unless every one of their intents is still ours."""
        ...

    def commit_deletes(self, collection: str, doc_ids: Sequence[str]) -> None:
        """The documents are out of both stores; LeaseLost, as commit_writes."""
        ...

    def pending(self, collection: str) -> list[Intent]:
        """Intents still to redo (not parked), whoever owns them."""
        ...

    def parked(self, collection: str) -> list[Intent]:
        """Intents parked as failed, with their reasons."""
        ...

    def park(self, collection: str, doc_id: str, reason: str) -> None:
        """The document's intent (ours) can never succeed: park it, and forget the committed version
        too, which the caller has already taken out of both stores."""
        ...

    def discard_parked(self, collection: str) -> int:
        """Remove the collection's parked intents; how many there were."""
        ...


def lease_lost(collection: str, taken: int, of: int) -> LeaseLost:
    return LeaseLost(
        f'another writer took over {taken} of {of} changes in collection "{collection}" after this'
        " server's lease on them ran out; it finishes them. Retry the request."
    )
