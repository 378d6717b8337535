"""Where Fathom's own state lives, at the lowest floor: one SQLite file shared by threads (sqlite.py) and
a PostgreSQL pool with its migrations (postgres.py). The stores built on them sit above: keys in auth/,
the journal in ingest/, and service/stores.py chooses between the two from settings."""
