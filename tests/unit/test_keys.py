"""Key store logic of the SQLite adapter: hashing, old schemas, damage, GCRA spacing, search-unit billing.

What every adapter must do (duplicates, all-or-nothing quotas, unlimited keys, revocation, shared limits)
is the Keys contract in tests/integration/test_state_contract.py, which runs on SQLite without any server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.auth.billing import billed, rerank_search_units
from service.auth.keys import KeyStore, hash_key
from service.errors import InvalidRequest, RateLimited, StateDamaged


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    keys = KeyStore(tmp_path / "keys.sqlite3")
    yield keys  # type: ignore[misc]
    keys.close()


def test_keys_are_stored_hashed_and_authenticate(store: KeyStore, tmp_path: Path) -> None:
    raw = store.create("a")
    assert store.authenticate(raw) is not None
    assert store.authenticate(raw + "x") is None
    assert raw.encode() not in (tmp_path / "keys.sqlite3").read_bytes()
    assert store.revoke("a") and store.authenticate(raw) is None
    assert not store.revoke("a")


@pytest.mark.anyio
async def test_failed_work_is_not_billed(store: KeyStore) -> None:
    store.create("b", quota=10)
    key = store.list()[0]
    with pytest.raises(RuntimeError):
        async with billed(store, key, 4):
            raise RuntimeError("inference failed")
    async with billed(store, key, 4):
        pass
    assert store.list()[0].used == 4


def test_new_keys_search_only_unless_scoped(store: KeyStore) -> None:
    plain = store.authenticate(store.create("plain"))
    assert plain is not None and plain.scopes == {"search"} and plain.collections is None
    assert plain.grants("search") and not plain.grants("write") and not plain.grants("admin")
    pusher = store.authenticate(store.create("p", scopes=frozenset({"write"}), collections=frozenset({"a"})))
    assert pusher is not None and pusher.grants("write") and not pusher.grants("search")
    assert pusher.reaches("a") and not pusher.reaches("b")
    admin = store.authenticate(store.create("root", scopes=frozenset({"admin"})))
    assert admin is not None and all(admin.grants(s) for s in ("search", "write", "admin"))
    with pytest.raises(InvalidRequest, match="unknown scope 'delete'"):
        store.create("bad", scopes=frozenset({"delete"}))


def test_keys_from_before_scopes_keep_every_scope(tmp_path: Path) -> None:
    """A key store made by the release before scopes: its keys keep working, with every scope."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE api_keys (name TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE,"
        " key_prefix TEXT NOT NULL, quota INTEGER, rate_limit INTEGER, used INTEGER NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL, revoked_at REAL, rate_tat REAL NOT NULL DEFAULT 0);"
    )
    old.execute(
        "INSERT INTO api_keys (name, key_hash, key_prefix, created_at) VALUES ('old', ?, 'fth_x', 1)",
        (hash_key("fth_old"),),
    )
    old.commit()
    old.close()
    store = KeyStore(path)
    try:
        key = store.authenticate("fth_old")
        assert key is not None and key.scopes == {"search", "write", "admin"} and key.collections is None
    finally:
        store.close()


def test_a_damaged_key_store_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "fathom.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateDamaged, match=f"key store file {path} is damaged"):
        KeyStore(path)


def test_gcra_allows_a_minute_of_burst_then_spaces_requests(store: KeyStore) -> None:
    store.create("r", rate_limit=6)  # one every 10 s, burst of 6
    now = 1_000.0
    for _ in range(6):
        store.admit("r", now)
    with pytest.raises(RateLimited) as limited:
        store.admit("r", now)
    assert limited.value.retry_after == pytest.approx(10.0)
    store.admit("r", now + 10.0)  # one slot has drained
    with pytest.raises(RateLimited):
        store.admit("r", now + 10.0)


@pytest.mark.parametrize(("documents", "units"), [(1, 1), (100, 1), (101, 2), (1000, 10)])
def test_search_units_as_cohere_bills(documents: int, units: int) -> None:
    assert rerank_search_units(documents) == units
