"""The ingest journal in one SQLite file under data_dir: the embedded default, for one machine.

Besides the lease every adapter honours, an owner here is known dead at once: each journal holds an
exclusive file lock named after its owner for its lifetime, which the kernel releases when the process
dies (kill -9 included). So a restart, or `fathom verify --repair` after a crash, redoes the dead
process's intents without waiting for their lease. Collections are held with a file lock each, so the
CLI and a server sharing data_dir take turns.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from service.ingest.journal import Committed, Held, Intent, lease_lost
from service.state.sqlite import SqliteFile, damaged

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    -- 'ready', or 'dropping' while its stores are being dropped (redone on the next start)
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    -- the fingerprint (JSON) of the embedder that wrote its vectors; NULL for collections made before
    -- fingerprints were kept, until their next write records one
    embedder TEXT
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
    -- the process that recorded or took over the intent, and until when (epoch s) it holds it
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;
"""
# Columns added after the first release, with the ALTER that adds each to an older journal.
_ADDED_COLUMNS = {
    ("intents", "state"): "ALTER TABLE intents ADD COLUMN state TEXT NOT NULL DEFAULT 'pending'",
    ("intents", "reason"): "ALTER TABLE intents ADD COLUMN reason TEXT",
    ("intents", "owner"): "ALTER TABLE intents ADD COLUMN owner TEXT",
    ("intents", "lease_until"): "ALTER TABLE intents ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
    ("collections", "embedder"): "ALTER TABLE collections ADD COLUMN embedder TEXT",
}

# Between tries for a collection another process holds.
HOLD_RETRY = 0.02
# SQLite's default limit on bound parameters is 32766; stay well below it.
IN_CLAUSE_SIZE = 900


class SqliteJournal:
    """The Journal protocol in one SQLite file; each method is one short transaction, safe from any thread."""

    def __init__(self, path: Path, *, owner: str, lease_seconds: float) -> None:
        # FULL: an intent must be on disk before the stores are touched, even across a power cut.
        self._file = SqliteFile(path, _SCHEMA, synchronous="FULL", role="journal")
        self._transaction = self._file.transaction
        self._query = self._file.query
        self._add_missing_columns()
        self._owner = owner
        self._lease = lease_seconds
        self._owners = path.parent / f"{path.name}.owners"
        self._locks = path.parent / f"{path.name}.locks"
        self._alive = FileLock.take(self._owners / owner_file(owner))
        if self._alive is None:
            self._file.close()
            raise ValueError(f"another journal on this machine already has the owner id {owner!r}")

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def lease_seconds(self) -> float:
        return self._lease

    def _add_missing_columns(self) -> None:
        tables = {table for table, _ in _ADDED_COLUMNS}
        present = {
            (table, str(row[1])) for table in tables for row in self._query(f"PRAGMA table_info({table})")
        }
        with self._transaction() as db:
            for column, alter in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(alter)

    def close(self) -> None:
        self._file.close()
        if self._alive is not None:
            self._alive.release(remove=True)
            self._alive = None

    def hold(self, collection: str, wait: float = 0.0) -> Held | None:
        path = self._locks / f"{hashlib.sha256(collection.encode()).hexdigest()[:32]}.lock"
        deadline = time.monotonic() + wait
        # flock cannot wait with a timeout: try, and try again, until the deadline.
        while (held := FileLock.take(path)) is None and time.monotonic() < deadline:
            time.sleep(HOLD_RETRY)
        return held

    # --- collections ------------------------------------------------------------------------------

    def add_collection(self, name: str, embedder: str | None = None) -> bool:
        """Register the collection; False when it was already there."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO collections (name, state, created_at, embedder)"
                " VALUES (?, 'ready', ?, ?)",
                (name, time.time(), embedder),
            )
            return cursor.rowcount > 0

    def embedder(self, name: str) -> str | None:
        rows = self._query("SELECT embedder FROM collections WHERE name = ?", (name,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def record_embedder(self, name: str, embedder: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE collections SET embedder = ? WHERE name = ?", (embedder, name))

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
        until = time.time() + self._lease
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO intents"
                " (collection, doc_id, action, content_hash, document, owner, lease_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (collection, i.doc_id, i.action, i.content_hash, i.document, self._owner, until)
                    for i in intents
                ],
            )

    def renew(self, collection: str, doc_ids: Sequence[str]) -> bool:
        until = time.time() + self._lease
        rows = [(collection, doc_id) for doc_id in set(doc_ids)]
        with self._transaction() as db:
            db.executemany(
                "UPDATE intents SET lease_until = ? WHERE collection = ? AND doc_id = ? AND owner = ?",
                [(until, collection, doc_id, self._owner) for _, doc_id in rows],
            )
            taken = sum(
                len(
                    db.execute(
                        "SELECT 1 FROM intents WHERE collection = ? AND doc_id = ? AND owner IS NOT ?",
                        (collection, doc_id, self._owner),
                    ).fetchall()
                )
                for _, doc_id in rows
            )
        return taken == 0

    def claim(self, collection: str) -> list[Intent]:
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                "SELECT doc_id, owner, lease_until FROM intents WHERE collection = ? AND state = 'pending'",
                (collection,),
            ).fetchall()
            taken = [str(doc_id) for doc_id, owner, until in rows if self._may_take(owner, until, now)]
            db.executemany(
                "UPDATE intents SET owner = ?, lease_until = ? WHERE collection = ? AND doc_id = ?",
                [(self._owner, now + self._lease, collection, doc_id) for doc_id in taken],
            )
        mine = set(taken)
        return [i for i in self.pending(collection) if i.doc_id in mine]

    def claimable(self) -> list[str]:
        now = time.time()
        rows = self._query("SELECT collection, owner, lease_until FROM intents WHERE state = 'pending'")
        return sorted(
            {str(c) for c, owner, until in rows if owner != self._owner and self._may_take(owner, until, now)}
        )

    def _may_take(self, owner: object, until: object, now: float) -> bool:
        if owner is None or owner == self._owner or float(str(until)) < now:
            return True
        return not FileLock.held(self._owners / owner_file(str(owner)))

    def commit_writes(self, collection: str, written: Sequence[tuple[str, str, int]], run: int) -> None:
        with self._transaction() as db:
            self._release_intents(db, collection, [doc_id for doc_id, _, _ in written])
            db.executemany(
                "INSERT OR REPLACE INTO documents (collection, doc_id, content_hash, chunk_count, seen_run) "
                "VALUES (?, ?, ?, ?, ?)",
                [(collection, doc_id, digest, count, run) for doc_id, digest, count in written],
            )

    def commit_deletes(self, collection: str, doc_ids: Sequence[str]) -> None:
        with self._transaction() as db:
            self._release_intents(db, collection, doc_ids)
            db.executemany(
                "DELETE FROM documents WHERE collection = ? AND doc_id = ?",
                [(collection, doc_id) for doc_id in doc_ids],
            )

    def _release_intents(self, db: sqlite3.Connection, collection: str, doc_ids: Sequence[str]) -> None:
        """Delete our intents for these documents; LeaseLost (the transaction rolls back) unless every
        one was still ours."""
        wanted = set(doc_ids)
        released = sum(
            db.execute(
                "DELETE FROM intents WHERE collection = ? AND doc_id = ? AND owner = ?",
                (collection, doc_id, self._owner),
            ).rowcount
            for doc_id in wanted
        )
        if released != len(wanted):
            raise lease_lost(collection, len(wanted) - released, len(wanted))

    def pending(self, collection: str) -> list[Intent]:
        """Intents still to redo (not parked)."""
        return self._intents(collection, "pending")

    def parked(self, collection: str) -> list[Intent]:
        """Intents parked as failed, with their reasons."""
        return self._intents(collection, "failed")

    def park(self, collection: str, doc_id: str, reason: str) -> None:
        with self._transaction() as db:
            parked = db.execute(
                "UPDATE intents SET state = 'failed', reason = ?"
                " WHERE collection = ? AND doc_id = ? AND owner = ?",
                (reason, collection, doc_id, self._owner),
            ).rowcount
            if not parked:
                raise lease_lost(collection, 1, 1)
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


def refuse_lost_journal(path: Path, stores: dict[Path, list[str]]) -> None:
    """StateDamaged when the journal is missing or empty while the stores hold collections.

    Opened as it is, it would be a new, empty journal: the collections would answer searches but be
    unknown to every write and management call, and their unfinished changes never redone. A journal
    that has ever been opened is never empty (the first PRAGMA writes its header), so zero bytes is a
    file truncated or replaced, not one being created.
    """
    if not stores:
        return
    wal = Path(f"{path}-wal")
    if path.exists() and (path.stat().st_size > 0 or (wal.exists() and wal.stat().st_size > 0)):
        return
    state = "empty (0 bytes)" if path.exists() else "missing"
    held = "; ".join(f"{folder} holds {', '.join(names)}" for folder, names in stores.items())
    raise damaged(
        path,
        "journal",
        f"it is {state}, but the stores hold collections: {held}",
        otherwise="move the store folders aside as well, to start empty and index again",
    )


def owner_file(owner: str) -> str:
    """A file name for the owner id: its readable part, and a digest so two ids never share one."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", owner)[:64]
    return f"{readable}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}.lock"


class FileLock:
    """An exclusive flock on a file; the kernel releases it when the holder dies, however it dies."""

    def __init__(self, path: Path, fd: int) -> None:
        self._path = path
        self._fd = fd

    @classmethod
    def take(cls, path: Path) -> FileLock | None:
        """The lock, or None at once when another holder (any process, or another open here) has it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    @staticmethod
    def held(path: Path) -> bool:
        """Whether someone holds the lock now; a file nobody holds is removed on the way."""
        if not path.exists():
            return False
        lock = FileLock.take(path)
        if lock is None:
            return True
        lock.release(remove=True)
        return False

    def release(self, *, remove: bool = False) -> None:
        if remove:  # while still holding it, so no new holder loses its file
            self._path.unlink(missing_ok=True)
        os.close(self._fd)
