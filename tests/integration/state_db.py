"""Throwaway PostgreSQL databases for state tests, on the server at FATHOM_TEST_POSTGRES_URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psycopg
import pytest

from service.settings import Settings, settings_from_dict

POSTGRES_URL = os.environ.get("FATHOM_TEST_POSTGRES_URL", "")
needs_postgres = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="FATHOM_TEST_POSTGRES_URL is not set"),
]


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database; dropped (with any connections left to it) on exit."""
    name = f"fathom_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# The two state adapters, as a fixture parameter: SQLite runs anywhere, PostgreSQL needs the server.
ADAPTERS = ["sqlite", pytest.param("postgres", marks=needs_postgres)]


@contextmanager
def state_settings(adapter: str, data_dir: Path, **state: object) -> Iterator[Settings]:
    """Settings on that adapter's state: SQLite under data_dir, or a fresh PostgreSQL database."""
    with fresh_database() if adapter == "postgres" else nullcontext("") as url:
        yield settings_from_dict({"data_dir": str(data_dir), "state": {"url": url, **state}})
