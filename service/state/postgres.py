"""PostgreSQL for shared state: a connection pool, and versioned migrations applied once.

Migrations are numbered SQL scripts applied in order, with their rows in `fathom_migrations`, in one
transaction under an advisory lock: replicas starting at once apply each exactly once, and a failed
migration leaves the database as it was. `fathom migrate` applies them ahead of a
deployment; `fathom serve` applies any that are missing at start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from service.errors import BackendUnavailable, StorageFull

log = logging.getLogger("fathom")

# (version, what it does, SQL). Append only: a released migration is never edited.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "api keys with quotas, GCRA rate limits, scopes, collections and public origins",
        """
        CREATE TABLE api_keys (
            name TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            key_prefix TEXT NOT NULL,
            quota BIGINT,
            rate_limit INTEGER,
            used BIGINT NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION,
            -- GCRA: the theoretical arrival time of the next request, in epoch seconds (database clock)
            rate_tat DOUBLE PRECISION NOT NULL DEFAULT 0,
            scopes TEXT,
            collections TEXT,
            origins TEXT
        );
        """,
    ),
    (
        2,
        "the ingest journal: collections, committed documents, intents with an owner and a lease",
        """
        CREATE TABLE journal_collections (
            name TEXT PRIMARY KEY,
            -- 'ready', or 'dropping' while its stores are being dropped
            state TEXT NOT NULL,
            -- epoch seconds on the database clock: the collection's generation
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE journal_documents (
            collection TEXT NOT NULL,
            doc_id TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            chunk_count INTEGER NOT NULL,
            seen_run BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (collection, doc_id)
        );
        CREATE TABLE journal_intents (
            collection TEXT NOT NULL,
            doc_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('write', 'delete')),
            content_hash TEXT,
            document TEXT,
            state TEXT NOT NULL DEFAULT 'pending',
            reason TEXT,
            owner TEXT,
            -- epoch seconds on the database clock
            lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (collection, doc_id)
        );
        """,
    ),
    (
        3,
        "the embedder fingerprint of each collection (NULL for collections made before it)",
        """
        ALTER TABLE journal_collections ADD COLUMN embedder TEXT;
        """,
    ),
    (
        4,
        "search analytics: searches, clicks and the daily visitor salts",
        """
        CREATE TABLE analytics_searches (
            search_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            collection TEXT NOT NULL,
            query TEXT NOT NULL,
            key_name TEXT,
            public BOOLEAN NOT NULL,
            filters TEXT NOT NULL,
            facets TEXT NOT NULL,
            hits INTEGER NOT NULL,
            typo BOOLEAN NOT NULL,
            prefix BOOLEAN NOT NULL,
            follow BOOLEAN NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL,
            degraded BOOLEAN NOT NULL,
            visitor TEXT
        );
        CREATE INDEX analytics_searches_by_collection ON analytics_searches (collection, at);
        CREATE INDEX analytics_searches_by_time ON analytics_searches (at);
        CREATE INDEX analytics_searches_by_id ON analytics_searches (search_id);
        CREATE TABLE analytics_clicks (
            search_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            hit_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            visitor TEXT
        );
        CREATE INDEX analytics_clicks_by_search ON analytics_clicks (search_id);
        CREATE INDEX analytics_clicks_by_time ON analytics_clicks (at);
        CREATE TABLE analytics_salts (day TEXT PRIMARY KEY, salt BYTEA NOT NULL);
        """,
    ),
]

# Any constant shared by every Fathom process: the key of the advisory lock migrations run under.
MIGRATION_LOCK = 0x46415448


class Postgres:
    """A pool of autocommit connections to one database; `connection()` lends one."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(
                url, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=False
            )
            self._pool.open(wait=True, timeout=10.0)
        except (psycopg.Error, TimeoutError) as exc:
            raise BackendUnavailable(f"the state database is unreachable: {exc}") from exc

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        try:
            with self._pool.connection(timeout=10.0) as conn:
                yield conn
        except psycopg.errors.DiskFull as exc:
            # Its message names files on the database server: that stays in the log.
            log.warning("the state database has no room: %s", exc)
            raise StorageFull(
                "the state database's disk is full: what this request changes cannot be written;"
                " free space on the database server and retry"
            ) from exc
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"the state database is unavailable: {exc}") from exc

    def borrow(self) -> psycopg.Connection[tuple[object, ...]]:
        """A connection kept past one call (a session's advisory lock); `give_back` returns it."""
        try:
            return self._pool.getconn(timeout=10.0)
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise BackendUnavailable(f"the state database is unavailable: {exc}") from exc

    def give_back(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self._pool.putconn(conn)

    def migrate(self) -> list[int]:
        """Apply the missing migrations, in order; the versions applied by this call."""
        applied: list[int] = []
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fathom_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {int(str(row[0])) for row in conn.execute("SELECT version FROM fathom_migrations")}
            for version, description, sql in MIGRATIONS:
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO fathom_migrations (version, description) VALUES (%s, %s)",
                        (version, description),
                    )
                applied.append(version)
        return applied

    def version(self) -> int:
        """The latest migration applied; 0 for a database Fathom has not migrated yet."""
        with self.connection() as conn:
            row = conn.execute("SELECT to_regclass('fathom_migrations') IS NOT NULL").fetchone()
            if not (row and row[0]):
                return 0
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM fathom_migrations").fetchone()
        return int(str(row[0])) if row else 0
