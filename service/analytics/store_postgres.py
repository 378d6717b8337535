"""Events in PostgreSQL, shared by every replica (tables of migration 3 in service/state/postgres.py)."""

from __future__ import annotations

from collections.abc import Sequence

from service.analytics.events import (
    CLICK_COLUMNS,
    SEARCH_COLUMNS,
    ClickEvent,
    SearchEvent,
    click_row,
    search_row,
)
from service.analytics.store import CLICKS_READ, SEARCH_READ, ClickRow, SearchRow, new_salt
from service.state.postgres import Postgres


class PostgresEventStore:
    """The EventStore protocol on the shared state database."""

    def __init__(self, database: Postgres) -> None:
        self._db = database

    def close(self) -> None:
        self._db.close()

    def write(self, searches: Sequence[SearchEvent], clicks: Sequence[ClickEvent]) -> None:
        marks = ", ".join(["%s"] * 15)
        with self._db.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            if searches:
                cursor.executemany(
                    f"INSERT INTO analytics_searches ({SEARCH_COLUMNS}) VALUES ({marks})".encode(),
                    [search_row(event) for event in searches],
                )
            if clicks:
                cursor.executemany(
                    f"INSERT INTO analytics_clicks ({CLICK_COLUMNS}) VALUES (%s, %s, %s, %s, %s)".encode(),
                    [click_row(event) for event in clicks],
                )

    def searches(self, collection: str, since: float) -> list[SearchRow]:
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT {SEARCH_READ} FROM analytics_searches"
                " WHERE collection = %s AND at >= %s ORDER BY at".encode(),
                (collection, since),
            ).fetchall()
        return [SearchRow.of(row) for row in rows]

    def clicks(self, collection: str, since: float) -> list[ClickRow]:
        with self._db.connection() as conn:
            rows = conn.execute(CLICKS_READ.format(p="%s").encode(), (collection, since)).fetchall()
        return [ClickRow(str(row[0]), int(str(row[1]))) for row in rows]

    def delete_before(self, cutoff: float) -> int:
        with self._db.connection() as conn, conn.transaction():
            searches = conn.execute("DELETE FROM analytics_searches WHERE at < %s", (cutoff,)).rowcount
            clicks = conn.execute("DELETE FROM analytics_clicks WHERE at < %s", (cutoff,)).rowcount
        return searches + clicks

    def day_salt(self, day: str) -> bytes:
        with self._db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM analytics_salts WHERE day < %s", (day,))
            # Replicas asking at once agree: the first insert wins, the others read it.
            conn.execute(
                "INSERT INTO analytics_salts (day, salt) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
                (day, new_salt()),
            )
            row = conn.execute("SELECT salt FROM analytics_salts WHERE day = %s", (day,)).fetchone()
        assert row is not None  # inserted or kept just above, in this transaction
        salt = row[0]
        assert isinstance(salt, bytes | memoryview)  # BYTEA
        return bytes(salt)
