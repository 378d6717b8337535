"""The configured state stores: PostgreSQL when [state] url is set, else SQLite under data_dir.

It sits above auth/ and ingest/, whose stores it builds, and service/state/, whose connections they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.auth.keys import Keys, KeyStore
from service.ingest.journal import Journal, replica_id
from service.settings import Settings

if TYPE_CHECKING:
    from service.state.postgres import Postgres


def open_keys(settings: Settings) -> Keys:
    """The key store; on PostgreSQL, missing migrations are applied first."""
    if not settings.state.url:
        return KeyStore.in_data_dir(settings.data_path)
    from service.auth.keys_postgres import PostgresKeyStore

    return PostgresKeyStore(migrated(settings.state.url))


def open_journal(settings: Settings) -> Journal:
    """The ingest journal, owned by a new replica id; on PostgreSQL, migrations are applied first."""
    owner = replica_id(settings.state.replica_name)
    lease = settings.state.lease_seconds
    if not settings.state.url:
        from service.backends.stack import embedded_collections
        from service.ingest.journal_sqlite import SqliteJournal, journal_path, refuse_lost_journal

        path = journal_path(settings.data_path)
        refuse_lost_journal(path, embedded_collections(settings))
        return SqliteJournal(path, owner=owner, lease_seconds=lease)
    from service.ingest.journal_postgres import PostgresJournal

    # Each collection being written holds a connection for the write (its advisory lock): room for
    # several at once besides the short queries.
    return PostgresJournal(migrated(settings.state.url, max_size=20), owner=owner, lease_seconds=lease)


def migrated(url: str, max_size: int = 10) -> Postgres:
    """A pool on the state database, its missing migrations applied."""
    from service.state.postgres import Postgres

    database = Postgres(url, max_size=max_size)
    try:
        database.migrate()
    except BaseException:
        database.close()
        raise
    return database
