"""Where events are kept: the EventStore protocol, and its SQLite adapter (one file under data_dir).

The PostgreSQL adapter (store_postgres.py) holds the same tables for every replica, so an answer
aggregates the events of all of them. Reading returns plain rows; service/analytics/report.py
summarises them the same way whichever store they came from.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from service.analytics.events import (
    CLICK_COLUMNS,
    SEARCH_COLUMNS,
    ClickEvent,
    SearchEvent,
    click_row,
    search_row,
)
from service.state.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analytics_searches (
    search_id TEXT NOT NULL,
    at REAL NOT NULL,
    collection TEXT NOT NULL,
    query TEXT NOT NULL,
    key_name TEXT,
    public INTEGER NOT NULL,
    filters TEXT NOT NULL,
    facets TEXT NOT NULL,
    hits INTEGER NOT NULL,
    typo INTEGER NOT NULL,
    prefix INTEGER NOT NULL,
    follow INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    degraded INTEGER NOT NULL,
    visitor TEXT
);
CREATE INDEX IF NOT EXISTS analytics_searches_by_collection ON analytics_searches (collection, at);
CREATE INDEX IF NOT EXISTS analytics_searches_by_time ON analytics_searches (at);
CREATE INDEX IF NOT EXISTS analytics_searches_by_id ON analytics_searches (search_id);
CREATE TABLE IF NOT EXISTS analytics_clicks (
    search_id TEXT NOT NULL,
    at REAL NOT NULL,
    hit_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    visitor TEXT
);
CREATE INDEX IF NOT EXISTS analytics_clicks_by_search ON analytics_clicks (search_id);
CREATE INDEX IF NOT EXISTS analytics_clicks_by_time ON analytics_clicks (at);
CREATE TABLE IF NOT EXISTS analytics_salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL);
"""

# What a report reads of a search, and of a click on one of the collection's searches.
SEARCH_READ = "search_id, at, query, hits, follow, latency_ms, visitor"
CLICKS_READ = (
    "SELECT c.search_id, c.position FROM analytics_clicks c"
    " JOIN analytics_searches s ON s.search_id = c.search_id"
    " WHERE s.collection = {p} AND s.at >= {p} ORDER BY c.at"
)


@dataclass(frozen=True, slots=True)
class SearchRow:
    search_id: str
    at: float
    query: str
    hits: int
    follow: bool
    latency_ms: float
    visitor: str | None

    @classmethod
    def of(cls, row: Sequence[object]) -> SearchRow:
        search_id, at, query, hits, follow, latency_ms, visitor = row
        return cls(
            str(search_id),
            float(str(at)),
            str(query),
            int(str(hits)),
            bool(follow),
            float(str(latency_ms)),
            None if visitor is None else str(visitor),
        )


@dataclass(frozen=True, slots=True)
class ClickRow:
    search_id: str
    position: int


class EventStore(Protocol):
    def write(self, searches: Sequence[SearchEvent], clicks: Sequence[ClickEvent]) -> None:
        """Both lists in one transaction."""

    def searches(self, collection: str, since: float) -> list[SearchRow]:
        """The collection's searches at or after `since`, oldest first."""

    def clicks(self, collection: str, since: float) -> list[ClickRow]:
        """Clicks on those searches."""

    def delete_before(self, cutoff: float) -> int:
        """Forget events older than `cutoff`; the number of rows deleted."""

    def day_salt(self, day: str) -> bytes:
        """The secret salt of a UTC day (created by the first replica to ask); older days' are deleted."""

    def close(self) -> None: ...


def new_salt() -> bytes:
    return secrets.token_bytes(32)


class SqliteEventStore:
    """Events in <data_dir>/analytics.sqlite3: a file of its own, so batch writes never queue behind
    (or hold up) the key store's per-request writes."""

    def __init__(self, path: Path) -> None:
        # Losing the last commits in a power cut costs a few events, never a search: no fsync per batch.
        self._file = SqliteFile(path, _SCHEMA, synchronous="NORMAL", role="analytics store")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SqliteEventStore:
        return cls(data_dir / "analytics.sqlite3")

    def close(self) -> None:
        self._file.close()

    def write(self, searches: Sequence[SearchEvent], clicks: Sequence[ClickEvent]) -> None:
        marks = ", ".join(["?"] * 15)
        with self._file.transaction() as db:
            db.executemany(
                f"INSERT INTO analytics_searches ({SEARCH_COLUMNS}) VALUES ({marks})",
                [search_row(event) for event in searches],
            )
            db.executemany(
                f"INSERT INTO analytics_clicks ({CLICK_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [click_row(event) for event in clicks],
            )

    def searches(self, collection: str, since: float) -> list[SearchRow]:
        rows = self._file.query(
            f"SELECT {SEARCH_READ} FROM analytics_searches WHERE collection = ? AND at >= ? ORDER BY at",
            (collection, since),
        )
        return [SearchRow.of(row) for row in rows]

    def clicks(self, collection: str, since: float) -> list[ClickRow]:
        rows = self._file.query(CLICKS_READ.format(p="?"), (collection, since))
        return [ClickRow(str(row[0]), int(str(row[1]))) for row in rows]

    def delete_before(self, cutoff: float) -> int:
        with self._file.transaction() as db:
            searches = db.execute("DELETE FROM analytics_searches WHERE at < ?", (cutoff,)).rowcount
            clicks = db.execute("DELETE FROM analytics_clicks WHERE at < ?", (cutoff,)).rowcount
        return int(searches) + int(clicks)

    def day_salt(self, day: str) -> bytes:
        with self._file.transaction() as db:
            # Yesterday's salt goes once today's exists: a hash can no longer be matched to an address.
            db.execute("DELETE FROM analytics_salts WHERE day < ?", (day,))
            db.execute("INSERT OR IGNORE INTO analytics_salts (day, salt) VALUES (?, ?)", (day, new_salt()))
            [(salt,)] = db.execute("SELECT salt FROM analytics_salts WHERE day = ?", (day,)).fetchall()
        return bytes(salt)
