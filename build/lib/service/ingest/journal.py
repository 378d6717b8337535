"""The ingest journal: what each collection holds, and the writes begun but not yet confirmed.

`documents` rows are committed state: both stores acknowledged exactly `chunk_count` chunks of that
content. An `intents` row is recorded, in its own transaction, before either store is touched, and is
removed in the same transaction that commits the new state; so after a crash at any point, every
document whose stores may differ from its `documents` row still has an intent, and redoing the intent
(delete the document's chunks, write the recorded version) converges.

An intent a store refuses for good (the recorded version can never be written) is parked: its state
becomes 'failed' with the reason, the document is taken out of both stores and the committed state,
and later writes no longer redo it. `fathom verify` reports parked intents; `--repair` removes them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.sqlite_store import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    -- 'ready', or 'dropping' while its stores are being dropped (redone on the next start)
    state TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    -- the last run whose source held the document, for --delete-missing
    seen_run INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('write', 'delete')),
    content_hash TEXT,
    -- the new version as JSON, enough to redo the write without the source
    document TEXT,
    -- 'pending' until committed; 'failed' when parked, with the store's reason
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;
"""
# Columns added after the first release, with the ALTER that adds each to an older journal.
_ADDED_COLUMNS = {
    "state": "ALTER TABLE intents ADD COLUMN state TEXT NOT NULL DEFAULT 'pending'",
    "reason": "ALTER TABLE intents ADD COLUMN reason TEXT",
}

# SQLite's default limit on bound parameters is 32766; stay well below it.
IN_CLAUSE_SIZE = 900


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


class Journal:
    """Journal state in one SQLite file; each method is one short transaction, safe from any thread."""

    def __init__(self, path: Path) -> None:
        # FULL: an intent must be on disk before the stores are touched, even across a power cut.
        self._file = SqliteFile(path, _SCHEMA, synchronous="FULL", role="journal")
        self._transaction = self._file.transaction
        self._query = self._file.query
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        present = {str(row[1]) for row in self._query("PRAGMA table_info(intents)")}
        with self._transaction() as db:
            for column, alter in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(alter)

    def close(self) -> None:
        self._file.close()

    # --- collections ------------------------------------------------------------------------------

    def add_collection(self, name: str) -> bool:
        """Register the collection; False when it was already there."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO collections (name, state, created_at) VALUES (?, 'ready', ?)",
                (name, time.time()),
            )
            return cursor.rowcount > 0

    def generation(self, name: str) -> float | None:
        """When the live collection of that name was created (its identity); None unless it is ready.

        A collection dropped and created again has a new generation, so work begun on the old one can
        tell it is gone.
        """
        rows = self._query("SELECT created_at FROM collections WHERE name = ? AND state = 'ready'", (name,))
        return float(str(rows[0][0])) if rows else None

    def collections(self) -> dict[str, str]:
        """Name -> state of every registered collection."""
        return {str(n): str(s) for n, s in self._query("SELECT name, state FROM collections ORDER BY name")}

    def mark_dropping(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE collections SET state = 'dropping' WHERE name = ?", (name,))

    def forget_collection(self, name: str) -> None:
        with self._transaction() as db:
            for table, column in (("intents", "collection"), ("documents", "collection")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
            db.execute("DELETE FROM collections WHERE name = ?", (name,))

    # --- documents --------------------------------------------------------------------------------

    def committed(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Committed]:
        found: dict[str, Committed] = {}
        for start in range(0, len(doc_ids), IN_CLAUSE_SIZE):
            part = doc_ids[start : start + IN_CLAUSE_SIZE]
            rows = self._query(
                "SELECT doc_id, content_hash, chunk_count FROM documents "
                f"WHERE collection = ? AND doc_id IN ({','.join('?' * len(part))})",
                [collection, *part],
            )
            found.update({str(d): Committed(str(h), int(str(c))) for d, h, c in rows})
        return found

    def mark_seen(self, collection: str, doc_ids: Sequence[str], run: int) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE documents SET seen_run = ? WHERE collection = ? AND doc_id = ?",
                [(run, collection, doc_id) for doc_id in doc_ids],
            )

    def unseen(self, collection: str, run: int) -> list[str]:
        rows = self._query(
            "SELECT doc_id FROM documents WHERE collection = ? AND seen_run <> ? ORDER BY doc_id",
            (collection, run),
        )
        return [str(doc_id) for (doc_id,) in rows]

    def chunk_counts(self, collection: str) -> dict[str, int]:
        rows = self._query("SELECT doc_id, chunk_count FROM documents WHERE collection = ?", (collection,))
        return {str(doc_id): int(str(count)) for doc_id, count in rows}

    def document_count(self, collection: str) -> int:
        [(count,)] = self._query("SELECT COUNT(*) FROM documents WHERE collection = ?", (collection,))
        return int(str(count))

    def invalidate(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Forget the content hash, so the next run from the source rewrites these documents."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE documents SET content_hash = '' WHERE collection = ? AND doc_id = ?",
                [(collection, doc_id) for doc_id in doc_ids],
            )

    # --- intents ----------------------------------------------------------------------------------

    def begin(self, collection: str, intents: Sequence[Intent]) -> None:
        """Record the intents, all or none, before any store is touched."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO intents (collection, doc_id, action, content_hash, document) "
                "VALUES (?, ?, ?, ?, ?)",
                [(collection, i.doc_id, i.action, i.content_hash, i.document) for i in intents],
            )

    def commit_writes(self, collection: str, written: Sequence[tuple[str, str, int]], run: int) -> None:
        """Both stores hold these (doc_id, content_hash, chunk_count): make it the committed state."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents (collection, doc_id, content_hash, chunk_count, seen_run) "
                "VALUES (?, ?, ?, ?, ?)",
                [(collection, doc_id, digest, count, run) for doc_id, digest, count in written],
            )
            db.executemany(
                "DELETE FROM intents WHERE collection = ? AND doc_id = ?",
                [(collection, doc_id) for doc_id, _, _ in written],
            )

    def commit_deletes(self, collection: str, doc_ids: Sequence[str]) -> None:
        with self._transaction() as db:
            for table in ("documents", "intents"):
                db.executemany(
                    f"DELETE FROM {table} WHERE collection = ? AND doc_id = ?",
                    [(collection, doc_id) for doc_id in doc_ids],
                )

    def pending(self, collection: str) -> list[Intent]:
        """Intents still to redo (not parked)."""
        return self._intents(collection, "pending")

    def parked(self, collection: str) -> list[Intent]:
        """Intents parked as failed, with their reasons."""
        return self._intents(collection, "failed")

    def park(self, collection: str, doc_id: str, reason: str) -> None:
        """The document's intent can never succeed: park it, and forget the committed version too,
        which the caller has already taken out of both stores."""
        with self._transaction() as db:
            db.execute(
                "UPDATE intents SET state = 'failed', reason = ? WHERE collection = ? AND doc_id = ?",
                (reason, collection, doc_id),
            )
            db.execute("DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id))

    def discard_parked(self, collection: str) -> int:
        """Remove the collection's parked intents; how many there were."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM intents WHERE collection = ? AND state = 'failed'", (collection,)
            )
            return cursor.rowcount

    def _intents(self, collection: str, state: str) -> list[Intent]:
        rows = self._query(
            "SELECT doc_id, action, content_hash, document, reason FROM intents"
            " WHERE collection = ? AND state = ? ORDER BY doc_id",
            (collection, state),
        )
        return [
            Intent(str(d), str(a), *(None if v is None else str(v) for v in (h, j, r)))
            for d, a, h, j, r in rows
        ]


def journal_path(data_path: Path) -> Path:
    return data_path / "journal.sqlite3"
