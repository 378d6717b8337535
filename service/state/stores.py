"""The configured state stores: PostgreSQL when [state] url is set, else SQLite under data_dir."""

from __future__ import annotations

from service.auth.keys import Keys, KeyStore
from service.settings import Settings


def open_keys(settings: Settings) -> Keys:
    """The key store; on PostgreSQL, missing migrations are applied first."""
    if not settings.state.url:
        return KeyStore.in_data_dir(settings.data_path)
    from service.auth.keys_postgres import PostgresKeyStore
    from service.state.postgres import Postgres

    database = Postgres(settings.state.url)
    try:
        database.migrate()
    except BaseException:
        database.close()
        raise
    return PostgresKeyStore(database)
