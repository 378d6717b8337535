"""The configured event store: the shared state database when [state] url is set, else SQLite."""

from __future__ import annotations

from service.analytics.store import EventStore, SqliteEventStore
from service.settings import Settings


def open_events(settings: Settings) -> EventStore:
    """The event store beside the key store: SQLite under data_dir, or the shared state database."""
    if not settings.state.url:
        return SqliteEventStore.in_data_dir(settings.data_path)
    from service.analytics.store_postgres import PostgresEventStore
    from service.stores import migrated

    # Batches from one background task and the odd report: a small pool.
    return PostgresEventStore(migrated(settings.state.url, max_size=4))
