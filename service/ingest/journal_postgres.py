"""The ingest journal in PostgreSQL, shared by every replica (migration 2 in service/state/postgres.py).

What must hold across replicas is decided by the database, on its clock, in one statement each:
- a lease: `claim` takes over only intents whose lease ran out (`lease_until < now()`), and every
  commit deletes intents `WHERE owner = me`, in the transaction that writes the committed rows; so a
  replica that paused past its lease (GC, network) finds them gone and commits nothing (LeaseLost);
- a collection's writers take turns through a session advisory lock, held on one pooled connection for
  the whole write; a replica killed mid-write loses its session, which releases the lock at once;
- a collection's generation is its `created_at` in the shared table, so a delete through one replica
  ends an upsert running through another (404) instead of letting it re-create the documents.
Unlike SQLite, a dead owner is only ever known by its lease: replicas on other machines cannot see
each other's processes, and a replica cut off from the database may still be writing the stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from service.ingest.journal import Committed, Held, Intent, lease_lost
from service.state.postgres import Postgres

_NOW = "extract(epoch FROM clock_timestamp())"
# First half of the two-key advisory lock on a collection (the second is hashtext(name)), apart from
# the migration lock's single key.
COLLECTION_LOCKS = 0x4A4E4C


class _HeldCollection:
    """A collection's advisory lock and the pooled connection whose session holds it."""

    def __init__(self, database: Postgres, conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
        self._database = database
        self._conn = conn
        self._name = name

    def release(self) -> None:
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (COLLECTION_LOCKS, self._name))
        except psycopg.Error:
            # A broken session has lost the lock already; the pool must not lend it out again.
            self._conn.close()
        self._database.give_back(self._conn)


class PostgresJournal:
    """The Journal protocol on PostgreSQL; each method one short transaction on a pooled connection."""

    def __init__(self, database: Postgres, *, owner: str, lease_seconds: float) -> None:
        self._db = database
        self._owner = owner
        self._lease = lease_seconds

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def lease_seconds(self) -> float:
        return self._lease

    def close(self) -> None:
        self._db.close()

    # --- collections ------------------------------------------------------------------------------

    def add_collection(self, name: str, embedder: str | None = None) -> bool:
        with self._db.connection() as conn:
            return (
                conn.execute(
                    "INSERT INTO journal_collections (name, state, created_at, embedder)"
                    f" VALUES (%s, 'ready', {_NOW}, %s) ON CONFLICT (name) DO NOTHING",
                    (name, embedder),
                ).rowcount
                > 0
            )

    def embedder(self, name: str) -> str | None:
        rows = self._rows("SELECT embedder FROM journal_collections WHERE name = %s", (name,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def record_embedder(self, name: str, embedder: str) -> None:
        self._run("UPDATE journal_collections SET embedder = %s WHERE name = %s", (embedder, name))

    def generation(self, name: str) -> float | None:
        rows = self._rows(
            "SELECT created_at FROM journal_collections WHERE name = %s AND state = 'ready'", (name,)
        )
        return float(str(rows[0][0])) if rows else None

    def collections(self) -> dict[str, str]:
        rows = self._rows('SELECT name, state FROM journal_collections ORDER BY name COLLATE "C"')
        return {str(n): str(s) for n, s in rows}

    def mark_dropping(self, name: str) -> None:
        self._run("UPDATE journal_collections SET state = 'dropping' WHERE name = %s", (name,))

    def forget_collection(self, name: str) -> None:
        with self._db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM journal_intents WHERE collection = %s", (name,))
            conn.execute("DELETE FROM journal_documents WHERE collection = %s", (name,))
            conn.execute("DELETE FROM journal_collections WHERE name = %s", (name,))

    def hold(self, collection: str, wait: float = 0.0) -> Held | None:
        # 0 would mean no timeout at all.
        timeout = f"{max(1, int(wait * 1000))}ms"
        conn = self._db.borrow()
        try:
            # Waiting in the server's lock queue, first come first served; lock_timeout ends the wait.
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (COLLECTION_LOCKS, collection))
        except psycopg.errors.LockNotAvailable:
            self._db.give_back(conn)
            return None
        except BaseException:
            self._db.give_back(conn)
            raise
        # Taken at session level, so it outlives the transaction: held until released or the session ends.
        return _HeldCollection(self._db, conn, collection)

    # --- documents --------------------------------------------------------------------------------

    def committed(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Committed]:
        rows = self._rows(
            "SELECT doc_id, content_hash, chunk_count FROM journal_documents"
            " WHERE collection = %s AND doc_id = ANY(%s)",
            (collection, list(doc_ids)),
        )
        return {str(d): Committed(str(h), int(str(c))) for d, h, c in rows}

    def mark_seen(self, collection: str, doc_ids: Sequence[str], run: int) -> None:
        self._run(
            "UPDATE journal_documents SET seen_run = %s WHERE collection = %s AND doc_id = ANY(%s)",
            (run, collection, list(doc_ids)),
        )

    def unseen(self, collection: str, run: int) -> list[str]:
        rows = self._rows(
            "SELECT doc_id FROM journal_documents WHERE collection = %s AND seen_run <> %s"
            ' ORDER BY doc_id COLLATE "C"',
            (collection, run),
        )
        return [str(doc_id) for (doc_id,) in rows]

    def chunk_counts(self, collection: str) -> dict[str, int]:
        rows = self._rows(
            "SELECT doc_id, chunk_count FROM journal_documents WHERE collection = %s", (collection,)
        )
        return {str(doc_id): int(str(count)) for doc_id, count in rows}

    def document_count(self, collection: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM journal_documents WHERE collection = %s", (collection,))
        return int(str(rows[0][0]))

    def invalidate(self, collection: str, doc_ids: Sequence[str]) -> None:
        self._run(
            "UPDATE journal_documents SET content_hash = '' WHERE collection = %s AND doc_id = ANY(%s)",
            (collection, list(doc_ids)),
        )

    # --- intents ----------------------------------------------------------------------------------

    def begin(self, collection: str, intents: Sequence[Intent]) -> None:
        with self._db.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO journal_intents"
                " (collection, doc_id, action, content_hash, document, state, reason, owner, lease_until)"
                f" VALUES (%s, %s, %s, %s, %s, 'pending', NULL, %s, {_NOW} + %s)"
                " ON CONFLICT (collection, doc_id) DO UPDATE SET action = EXCLUDED.action,"
                " content_hash = EXCLUDED.content_hash, document = EXCLUDED.document, state = 'pending',"
                " reason = NULL, owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until",
                [
                    (collection, i.doc_id, i.action, i.content_hash, i.document, self._owner, self._lease)
                    for i in intents
                ],
            )

    def renew(self, collection: str, doc_ids: Sequence[str]) -> bool:
        params = {
            "me": self._owner,
            "lease": self._lease,
            "collection": collection,
            "ids": list(set(doc_ids)),
        }
        with self._db.connection() as conn:
            conn.execute(
                f"UPDATE journal_intents SET lease_until = {_NOW} + %(lease)s"
                " WHERE collection = %(collection)s AND doc_id = ANY(%(ids)s) AND owner = %(me)s",
                params,
            )
            row = conn.execute(
                "SELECT COUNT(*) FROM journal_intents WHERE collection = %(collection)s"
                " AND doc_id = ANY(%(ids)s) AND owner IS DISTINCT FROM %(me)s",
                params,
            ).fetchone()
        return row is not None and int(str(row[0])) == 0

    def claim(self, collection: str) -> list[Intent]:
        rows = self._rows(
            f"UPDATE journal_intents SET owner = %(me)s, lease_until = {_NOW} + %(lease)s"
            " WHERE collection = %(collection)s AND state = 'pending'"
            f" AND (owner IS NULL OR owner = %(me)s OR lease_until < {_NOW})"
            " RETURNING doc_id, action, content_hash, document, reason",
            {"me": self._owner, "lease": self._lease, "collection": collection},
        )
        return sorted((_intent(row) for row in rows), key=lambda intent: intent.doc_id)

    def claimable(self) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT collection FROM journal_intents WHERE state = 'pending'"
            f" AND (owner IS NULL OR (owner <> %s AND lease_until < {_NOW})) ORDER BY collection",
            (self._owner,),
        )
        return [str(name) for (name,) in rows]

    def commit_writes(self, collection: str, written: Sequence[tuple[str, str, int]], run: int) -> None:
        with self._db.connection() as conn, conn.transaction():
            self._release_intents(conn, collection, [doc_id for doc_id, _, _ in written])
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO journal_documents (collection, doc_id, content_hash, chunk_count, seen_run)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection, doc_id) DO UPDATE SET"
                    " content_hash = EXCLUDED.content_hash, chunk_count = EXCLUDED.chunk_count,"
                    " seen_run = EXCLUDED.seen_run",
                    [(collection, doc_id, digest, count, run) for doc_id, digest, count in written],
                )

    def commit_deletes(self, collection: str, doc_ids: Sequence[str]) -> None:
        with self._db.connection() as conn, conn.transaction():
            self._release_intents(conn, collection, doc_ids)
            conn.execute(
                "DELETE FROM journal_documents WHERE collection = %s AND doc_id = ANY(%s)",
                (collection, list(doc_ids)),
            )

    def _release_intents(
        self, conn: psycopg.Connection[tuple[object, ...]], collection: str, doc_ids: Sequence[str]
    ) -> None:
        """Delete our intents for these documents; LeaseLost (the transaction rolls back) unless every
        one was still ours."""
        wanted = set(doc_ids)
        released = conn.execute(
            "DELETE FROM journal_intents WHERE collection = %s AND doc_id = ANY(%s) AND owner = %s",
            (collection, list(wanted), self._owner),
        ).rowcount
        if released != len(wanted):
            raise lease_lost(collection, len(wanted) - released, len(wanted))

    def pending(self, collection: str) -> list[Intent]:
        return self._intents(collection, "pending")

    def parked(self, collection: str) -> list[Intent]:
        return self._intents(collection, "failed")

    def park(self, collection: str, doc_id: str, reason: str) -> None:
        with self._db.connection() as conn, conn.transaction():
            parked = conn.execute(
                "UPDATE journal_intents SET state = 'failed', reason = %s"
                " WHERE collection = %s AND doc_id = %s AND owner = %s",
                (reason, collection, doc_id, self._owner),
            ).rowcount
            if not parked:
                raise lease_lost(collection, 1, 1)
            conn.execute(
                "DELETE FROM journal_documents WHERE collection = %s AND doc_id = %s", (collection, doc_id)
            )

    def discard_parked(self, collection: str) -> int:
        with self._db.connection() as conn:
            return conn.execute(
                "DELETE FROM journal_intents WHERE collection = %s AND state = 'failed'", (collection,)
            ).rowcount

    def _intents(self, collection: str, state: str) -> list[Intent]:
        rows = self._rows(
            "SELECT doc_id, action, content_hash, document, reason FROM journal_intents"
            ' WHERE collection = %s AND state = %s ORDER BY doc_id COLLATE "C"',
            (collection, state),
        )
        return [_intent(row) for row in rows]

    def _rows(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple[object, ...]]:
        with self._db.connection() as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def _run(self, sql: str, params: Sequence[object]) -> None:
        with self._db.connection() as conn:
            conn.execute(sql.encode(), params)


def _intent(row: tuple[object, ...]) -> Intent:
    doc_id, action, *rest = row
    return Intent(str(doc_id), str(action), *(None if v is None else str(v) for v in rest))
