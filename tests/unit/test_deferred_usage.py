"""DeferredUsage's bookkeeping over a key store whose writes can be made to fail as a full disk does.

The store is a fake: this is the pure logic of holding, refunding and writing back usage. The real
full disk, through the HTTP API, is tests/integration/test_disk_full.py.
"""

from __future__ import annotations

import pytest

from service.auth.deferred_usage import RETRY_SECONDS, DeferredUsage
from service.auth.keys import ApiKey
from service.errors import QuotaExceeded, RateLimited, StorageFull


class FullableStore:
    """Keeps `used` per key; every write raises StorageFull while `full`."""

    def __init__(self, **quotas: int | None) -> None:
        self.full = False
        self.used = dict.fromkeys(quotas, 0)
        self.quotas = quotas
        self.rate_limits: dict[str, int] = {}

    def _write(self) -> None:
        if self.full:
            raise StorageFull("the server's storage is full")

    def list(self) -> list[ApiKey]:
        return [
            ApiKey(name, "fth_", self.quotas[name], self.rate_limits.get(name), used, 0.0, None)
            for name, used in self.used.items()
        ]

    def charge(self, name: str, units: int) -> None:
        self._write()
        quota = self.quotas[name]
        if quota is not None and self.used[name] + units > quota:
            raise QuotaExceeded("over")
        self.used[name] += units

    def refund(self, name: str, units: int) -> None:
        self._write()
        self.used[name] = max(self.used[name] - units, 0)

    def add_usage(self, name: str, units: int) -> None:
        self._write()
        self.used[name] = max(self.used[name] + units, 0)

    def admit(self, name: str, now: float | None = None) -> None:
        self._write()

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def deferred(store: FullableStore, clock: Clock) -> DeferredUsage:
    return DeferredUsage(store, clock=clock)  # type: ignore[arg-type]  # the fake has what is used


def test_charges_are_held_within_the_quota_and_written_once_there_is_room() -> None:
    store, clock = FullableStore(k=5), Clock()
    keys = deferred(store, clock)
    keys.charge("k", 2)
    store.full = True
    keys.charge("k", 2)
    with pytest.raises(QuotaExceeded, match="1 of 5 left"):  # 2 stored + 2 held
        keys.charge("k", 2)
    keys.charge("k", 1)
    assert keys.held() == {"k": 3} and store.used == {"k": 2}

    store.full = False
    keys.charge("k", 0)  # too soon after the last try: still held
    assert keys.held() == {"k": 3}
    clock.now += RETRY_SECONDS
    with pytest.raises(QuotaExceeded):  # written back, and the store's own check is in force again
        keys.charge("k", 1)
    assert keys.held() == {} and store.used == {"k": 5}


def test_a_failed_request_refunds_held_units_in_memory_and_stored_ones_later() -> None:
    store, clock = FullableStore(k=None), Clock()
    keys = deferred(store, clock)
    keys.charge("k", 4)
    store.full = True
    keys.charge("k", 2)
    keys.refund("k", 3)  # 2 of them held, 1 already stored: that one is held as -1
    assert keys.held() == {"k": -1}
    store.full = False
    clock.now += RETRY_SECONDS
    keys.charge("k", 1)
    assert store.used == {"k": 4} and keys.held() == {}


def test_rate_limits_hold_in_memory_while_usage_is_held() -> None:
    store, clock = FullableStore(k=None), Clock()
    store.rate_limits["k"] = 2
    keys = deferred(store, clock)
    store.full = True
    keys.charge("k", 1)
    keys.admit("k", now=100.0)
    keys.admit("k", now=100.0)
    with pytest.raises(RateLimited):
        keys.admit("k", now=100.0)
    keys.admit("k", now=130.0)
