"""Key state in PostgreSQL, shared by every replica: the `Keys` protocol's second adapter.

Each decision that must hold across replicas is one statement, so no replica can act on a stale read:
- quota: `UPDATE ... SET used = used + n WHERE used + n <= quota` (the row lock makes concurrent charges
  queue; a charge that would overdraw matches no row);
- rate limit: GCRA as one conditional UPDATE of the key's theoretical arrival time, on the database's
  clock, so replicas whose clocks differ still share one limit;
- revocation: every request authenticates against the table, so a revoked key is refused by every
  replica from the next request on.
"""

from __future__ import annotations

import builtins
import time

import psycopg

from service.auth import scopes as scope
from service.auth.keys import (
    NEW_KEY_COLUMNS,
    ApiKey,
    duplicate,
    hash_key,
    new_key_row,
    quota_exceeded,
    rate_limited,
)
from service.state.postgres import Postgres

_COLUMNS = "name, key_prefix, quota, rate_limit, used, created_at, revoked_at, scopes, collections, origins"
_PLACEHOLDERS = ", ".join(["%s"] * len(NEW_KEY_COLUMNS.split(",")))
_NOW = "extract(epoch FROM clock_timestamp())"


class PostgresKeyStore:
    """The Keys protocol on PostgreSQL (migrated by service/state/postgres.py)."""

    def __init__(self, database: Postgres) -> None:
        self._db = database

    def close(self) -> None:
        self._db.close()

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
        raw, row = new_key_row(
            name, quota=quota, rate_limit=rate_limit, scopes=scopes, collections=collections, origins=origins
        )
        with self._db.connection() as conn:
            try:
                conn.execute(
                    f"INSERT INTO api_keys ({NEW_KEY_COLUMNS}) VALUES ({', '.join(['%s'] * 9)})", row
                )
            except psycopg.errors.UniqueViolation:
                raise duplicate(name) from None
        return raw

    def public_origins(self) -> frozenset[str]:
        rows = self._rows("SELECT origins FROM api_keys WHERE origins IS NOT NULL AND revoked_at IS NULL")
        return frozenset().union(*(scope.from_text(row[0]) or () for row in rows))

    def list(self) -> list[ApiKey]:
        return [
            ApiKey.from_row(row) for row in self._rows(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        ]

    def revoke(self, name: str) -> bool:
        with self._db.connection() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL",
                (time.time(), name),
            )
            return cursor.rowcount > 0

    def authenticate(self, raw: str) -> ApiKey | None:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (hash_key(raw),)
        )
        return ApiKey.from_row(rows[0]) if rows else None

    def admit(self, name: str, now: float | None = None) -> None:
        """GCRA in one statement: admitted when the next arrival time is within the burst window.

        `now` (tests) replaces the database clock.
        """
        clock = _NOW if now is None else "%(now)s"
        params = {"name": name, "now": now}
        with self._db.connection() as conn:
            admitted = conn.execute(
                f"UPDATE api_keys SET rate_tat = GREATEST(rate_tat, {clock}) + 60.0 / rate_limit"
                " WHERE name = %(name)s AND rate_limit IS NOT NULL"
                f" AND GREATEST(rate_tat, {clock}) - {clock} <= 60.0 - 60.0 / rate_limit",
                params,
            ).rowcount
            if admitted:
                return
            # Not admitted, or not limited: read why, only to word the refusal.
            row = conn.execute(
                f"SELECT rate_limit, GREATEST(rate_tat, {clock}) - {clock} - (60.0 - 60.0 / rate_limit)"
                " FROM api_keys WHERE name = %(name)s",
                params,
            ).fetchone()
        if row is None or row[0] is None or float(str(row[1])) <= 0:
            return
        raise rate_limited(int(str(row[0])), float(str(row[1])))

    def charge(self, name: str, units: int) -> None:
        with self._db.connection() as conn:
            charged = conn.execute(
                "UPDATE api_keys SET used = used + %(units)s"
                " WHERE name = %(name)s AND (quota IS NULL OR used + %(units)s <= quota)",
                {"name": name, "units": units},
            ).rowcount
            if charged:
                return
            row = conn.execute("SELECT quota, used FROM api_keys WHERE name = %s", (name,)).fetchone()
        if row is not None and row[0] is not None:
            raise quota_exceeded(units, int(str(row[0])), int(str(row[1])))

    def refund(self, name: str, units: int) -> None:
        with self._db.connection() as conn:
            conn.execute("UPDATE api_keys SET used = GREATEST(used - %s, 0) WHERE name = %s", (units, name))

    def add_usage(self, name: str, units: int) -> None:
        with self._db.connection() as conn:
            conn.execute("UPDATE api_keys SET used = GREATEST(used + %s, 0) WHERE name = %s", (units, name))

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> builtins.list[tuple[object, ...]]:
        with self._db.connection() as conn:
            return conn.execute(sql.encode(), params).fetchall()
