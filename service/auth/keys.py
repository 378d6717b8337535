"""API keys, quotas and rate limits, kept in SQLite under data_dir so they survive restarts.

Keys are shown once and stored as SHA-256 hashes: they carry 256 random bits, so a slow password
hash adds nothing. Rate limits use GCRA (a leaky bucket kept as one timestamp per key), which
allows a burst of up to the per-minute limit and then spreads requests evenly.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from service.auth import scopes as scope
from service.auth.public import PUBLIC_RATE_LIMIT
from service.errors import InvalidRequest, QuotaExceeded, RateLimited
from service.state.sqlite import SqliteFile

KEY_PREFIX = "fth_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    quota INTEGER,
    rate_limit INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    revoked_at REAL,
    -- GCRA: the theoretical arrival time of the next request, in epoch seconds.
    rate_tat REAL NOT NULL DEFAULT 0,
    -- comma-separated scopes; NULL for keys made before scopes existed (they hold every scope)
    scopes TEXT,
    -- comma-separated collection names the key is limited to; NULL for all
    collections TEXT,
    -- a public key's comma-separated origins (service/auth/public.py); NULL for a secret key
    origins TEXT
);
"""
# Columns added after the first release, with the ALTER that adds each to an older key store.
_ADDED_COLUMNS = {
    "scopes": "ALTER TABLE api_keys ADD COLUMN scopes TEXT",
    "collections": "ALTER TABLE api_keys ADD COLUMN collections TEXT",
    "origins": "ALTER TABLE api_keys ADD COLUMN origins TEXT",
}
_COLUMNS = "name, key_prefix, quota, rate_limit, used, created_at, revoked_at, scopes, collections, origins"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    key_prefix: str
    quota: int | None
    rate_limit: int | None
    used: int
    created_at: float
    revoked_at: float | None
    scopes: frozenset[str] = scope.LEGACY_SCOPES
    # None: every collection
    collections: frozenset[str] | None = None
    # A public key's origins; None for a secret key
    origins: frozenset[str] | None = None

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> ApiKey:
        name, prefix, quota, rate_limit, used, created_at, revoked_at, scopes, collections, origins = row
        return cls(
            str(name),
            str(prefix),
            None if quota is None else int(str(quota)),
            None if rate_limit is None else int(str(rate_limit)),
            int(str(used)),
            float(str(created_at)),
            None if revoked_at is None else float(str(revoked_at)),
            scope.LEGACY_SCOPES if scopes is None else scope.from_text(scopes) or frozenset(),
            scope.from_text(collections),
            scope.from_text(origins),
        )

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def public(self) -> bool:
        return self.origins is not None

    def grants(self, needed: str) -> bool:
        return scope.grants(self.scopes, needed)

    def reaches(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class Keys(Protocol):
    """Key state, wherever it lives: SQLite under data_dir (KeyStore) or PostgreSQL shared by replicas
    (service/auth/keys_postgres.py). Methods are blocking and thread-safe; the server calls them
    through asyncio.to_thread. tests/integration/test_state_contract.py holds both to this contract.
    """

    def close(self) -> None: ...

    def create(
        self,
        name: str,
        *,
        quota: int | None = None,
        rate_limit: int | None = None,
        scopes: frozenset[str] = scope.DEFAULT_SCOPES,
        collections: frozenset[str] | None = None,
        origins: frozenset[str] | None = None,
    ) -> str: ...

    def public_origins(self) -> frozenset[str]: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, name: str) -> bool: ...

    def authenticate(self, raw: str) -> ApiKey | None: ...

    def admit(self, name: str, now: float | None = None) -> None: ...

    def charge(self, name: str, units: int) -> None: ...

    def refund(self, name: str, units: int) -> None: ...

    def add_usage(self, name: str, units: int) -> None:
        """Add units already spent, past the quota if need be (usage held while the disk was full)."""
        ...


class KeyStore:
    """All key state in SQLite; every method is one short transaction, safe from any thread."""

    def __init__(self, path: Path) -> None:
        # Every keyed request writes (rate limit, usage): an fsync per commit would cost ~6 ms each here.
        self._file = SqliteFile(path, _SCHEMA, synchronous="NORMAL", role="key store")
        self._transaction = self._file.transaction
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a key store from an older release up to this schema; its keys keep LEGACY_SCOPES."""
        present = {str(row[1]) for row in self._file.query("PRAGMA table_info(api_keys)")}
        with self._transaction() as db:
            for column, alter in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(alter)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> KeyStore:
        return cls(data_dir / "fathom.sqlite3")

    def close(self) -> None:
        self._file.close()

    def create(
        self,
        name: str,
        *,
        quota: int | None = None,
        rate_limit: int | None = None,
        scopes: frozenset[str] = scope.DEFAULT_SCOPES,
        collections: frozenset[str] | None = None,
        origins: frozenset[str] | None = None,
    ) -> str:
        """A new key; the raw key is returned once and never stored.

        With `origins` it is a public key: search only, limited to `collections` (required), and
        rate-limited (PUBLIC_RATE_LIMIT unless `rate_limit` says otherwise).
        """
        raw, row = new_key_row(
            name, quota=quota, rate_limit=rate_limit, scopes=scopes, collections=collections, origins=origins
        )
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise duplicate(name)
            db.execute(f"INSERT INTO api_keys ({NEW_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return raw

    def public_origins(self) -> frozenset[str]:
        """Every origin an active public key names: the origins CORS answers."""
        rows = self._file.query(
            "SELECT origins FROM api_keys WHERE origins IS NOT NULL AND revoked_at IS NULL"
        )
        return frozenset().union(*(scope.from_text(row[0]) or () for row in rows))

    def list(self) -> list[ApiKey]:
        rows = self._file.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        return [ApiKey.from_row(row) for row in rows]

    def revoke(self, name: str) -> bool:
        """Revoke by name; False when no active key has that name."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (time.time(), name),
            )
        return cursor.rowcount > 0

    def authenticate(self, raw: str) -> ApiKey | None:
        """The active key matching a raw key, or None."""
        rows = self._file.query(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (hash_key(raw),)
        )
        return ApiKey.from_row(rows[0]) if rows else None

    def admit(self, name: str, now: float | None = None) -> None:
        """Count one request against the key's rate limit; raise RateLimited when over it."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute("SELECT rate_limit, rate_tat FROM api_keys WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] is None:
                return
            limit, tat = row
            interval = 60.0 / limit
            tat = max(tat, now)
            wait = tat - now - (60.0 - interval)
            if wait > 0:
                raise rate_limited(limit, wait)
            db.execute("UPDATE api_keys SET rate_tat = ? WHERE name = ?", (tat + interval, name))

    def charge(self, name: str, units: int) -> None:
        """Take `units` search units from the key's quota, all or nothing; QuotaExceeded when short."""
        with self._transaction() as db:
            quota, used = db.execute("SELECT quota, used FROM api_keys WHERE name = ?", (name,)).fetchone()
            if quota is not None and used + units > quota:
                raise quota_exceeded(units, quota, used)
            db.execute("UPDATE api_keys SET used = used + ? WHERE name = ?", (units, name))

    def refund(self, name: str, units: int) -> None:
        """Give back units charged for a request that then failed on our side."""
        with self._transaction() as db:
            db.execute("UPDATE api_keys SET used = MAX(used - ?, 0) WHERE name = ?", (units, name))

    def add_usage(self, name: str, units: int) -> None:
        """Add units already spent (held while the disk was full): no quota check, they are spent."""
        with self._transaction() as db:
            db.execute("UPDATE api_keys SET used = MAX(used + ?, 0) WHERE name = ?", (units, name))


# The columns a new key is inserted with, in new_key_row's order.
NEW_KEY_COLUMNS = "name, key_hash, key_prefix, quota, rate_limit, created_at, scopes, collections, origins"


def new_key_row(
    name: str,
    *,
    quota: int | None,
    rate_limit: int | None,
    scopes: frozenset[str],
    collections: frozenset[str] | None,
    origins: frozenset[str] | None,
) -> tuple[str, tuple[object, ...]]:
    """A new raw key and its row (NEW_KEY_COLUMNS), after the checks every key store makes."""
    if not name.strip():
        raise InvalidRequest("a key needs a non-empty name")
    if quota is not None and quota < 0:
        raise InvalidRequest("quota must be 0 or more search units")
    if rate_limit is not None and rate_limit < 1:
        raise InvalidRequest("rate limit must be at least 1 request per minute")
    scopes = scope.parse_scopes(scopes)
    if origins is not None:
        check_public_key(scopes, collections, origins)
        rate_limit = PUBLIC_RATE_LIMIT if rate_limit is None else rate_limit
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = (
        name,
        hash_key(raw),
        raw[:8],
        quota,
        rate_limit,
        time.time(),
        scope.to_text(scopes),
        scope.to_text(collections),
        scope.to_text(origins),
    )
    return raw, row


def duplicate(name: str) -> InvalidRequest:
    return InvalidRequest(f"a key named {name!r} already exists; pick another name")


def rate_limited(limit: int, wait: float) -> RateLimited:
    return RateLimited(
        f"rate limit of {limit} requests per minute exceeded; retry in {wait:.1f} s", retry_after=wait
    )


def quota_exceeded(units: int, quota: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"quota exhausted: this request needs {units} search unit(s) and the key has"
        f" {max(quota - used, 0)} of {quota} left; ask for a larger quota"
    )


def check_public_key(
    scopes: frozenset[str], collections: frozenset[str] | None, origins: frozenset[str]
) -> None:
    """A public key is a search key for named collections, used from at least one origin."""
    if not origins:
        raise InvalidRequest("a public key needs at least one origin it may be used from (--origin)")
    if scopes != {scope.SEARCH}:
        raise InvalidRequest("a public key can only have the search scope: anyone can read it from the page")
    if not collections:
        raise InvalidRequest("a public key must name the collections it may search (--collections)")
