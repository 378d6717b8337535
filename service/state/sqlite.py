"""One SQLite file shared by threads (and processes): WAL, serialised writes, short transactions."""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from service.errors import BackendUnavailable, StateDamaged, StorageFull

_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_FULL = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def translated(error: sqlite3.Error, path: Path, role: str) -> Exception:
    """A SQLite failure as the client or operator should read it; others are returned unchanged.

    Damage names the file (operators run the CLI and read /readyz; it is their file); a full disk
    says so without a path, since that message also goes to API clients.
    """
    code = primary_code(error)
    if code in _DAMAGED:
        return damaged(path, role, str(error))
    if code in _FULL:
        return StorageFull(
            f"the server's storage is full or failing: the {role} cannot be written; free space and retry"
        )
    if code in _BUSY:
        return BackendUnavailable(f"the {role} is busy in another process; retry shortly")
    return error


MOVE_ASIDE = "move it aside to start with an empty one"


def primary_code(error: sqlite3.Error) -> int:
    """The primary result code: the low byte of the extended one Python reports."""
    return int(getattr(error, "sqlite_errorcode", 0)) & 0xFF


def is_full(error: sqlite3.Error) -> bool:
    """A write the disk had no room for (SQLite reports a full disk as FULL, or as an I/O error)."""
    return primary_code(error) in _FULL


def damaged(path: Path, role: str, detail: str, *, otherwise: str = MOVE_ASIDE) -> StateDamaged:
    """`otherwise`: what to do without a backup."""
    return StateDamaged(
        f"the {role} file {path} is damaged ({detail}): stop Fathom, then restore it from a backup"
        f" or {otherwise}"
    )


class SqliteFile:
    """A connection any thread may use, one statement or transaction at a time.

    `synchronous` is the durability trade: FULL syncs every commit; NORMAL (safe in WAL mode,
    never corrupts) may lose the last commits in a power cut, and costs no fsync per commit.
    `role` names the file in errors ("journal", "key store").
    """

    def __init__(
        self, path: Path, schema: str, *, synchronous: Literal["FULL", "NORMAL"], role: str = "state"
    ) -> None:
        self.path = path
        self.role = role
        self._lock = threading.Lock()
        with self.errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                self._db.execute("PRAGMA busy_timeout=10000")
                # A file damaged past its header opens fine and fails later, mid-request: find out now.
                [(verdict,)] = self._db.execute("PRAGMA quick_check(1)").fetchall()
                if verdict != "ok":
                    raise damaged(path, role, f"integrity check: {verdict}")
                self._db.executescript(schema)
            except BaseException:
                self._db.close()
                raise

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate SQLite failures (damage, full disk, lock contention) into Fathom's errors."""
        try:
            yield
        except sqlite3.Error as exc:
            error = translated(exc, self.path, self.role)
            if error is exc:
                raise
            raise error from exc
        except OSError as exc:  # creating the folder
            if exc.errno != errno.ENOSPC:
                raise
            raise StorageFull(f"the server's disk is full: the {self.role} cannot be created") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: writers in other processes sharing the file wait for the write lock."""
        with self.errors(), self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with suppress(sqlite3.Error):  # a failed statement may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self.errors(), self._lock:
            return self._db.execute(sql, params).fetchall()
