"""Key store logic: hashing, quotas all-or-nothing, GCRA rate limits, search-unit billing."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.auth.billing import billed, rerank_search_units
from service.auth.keys import KeyStore
from service.search.errors import InvalidRequest, QuotaExceeded, RateLimited


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


def test_duplicate_or_blank_names_are_refused(store: KeyStore) -> None:
    store.create("a")
    with pytest.raises(InvalidRequest, match="already exists"):
        store.create("a")
    with pytest.raises(InvalidRequest, match="non-empty"):
        store.create("  ")


def test_quota_is_all_or_nothing_and_refundable(store: KeyStore) -> None:
    store.create("q", quota=5)
    store.charge("q", 3)
    with pytest.raises(QuotaExceeded, match="2 of 5 left"):
        store.charge("q", 3)
    store.refund("q", 3)
    store.charge("q", 5)
    assert store.list()[0].used == 5


def test_failed_work_is_not_billed(store: KeyStore) -> None:
    store.create("b", quota=10)
    key = store.list()[0]
    with pytest.raises(RuntimeError), billed(store, key, 4):
        raise RuntimeError("inference failed")
    with billed(store, key, 4):
        pass
    assert store.list()[0].used == 4


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


def test_unlimited_keys_are_never_limited(store: KeyStore) -> None:
    store.create("u")
    for _ in range(1000):
        store.admit("u", 5.0)


@pytest.mark.parametrize(("documents", "units"), [(1, 1), (100, 1), (101, 2), (1000, 10)])
def test_search_units_as_cohere_bills(documents: int, units: int) -> None:
    assert rerank_search_units(documents) == units
