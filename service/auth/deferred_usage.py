"""Reads keep answering when the key store's disk is full: usage is held in memory until it fits.

Every keyed search, rerank or embedding writes to the key store (its usage, its rate-limit slot). With
the disk full those writes fail, and without this every read would fail with them. DeferredUsage
wraps any key store: when a write answers StorageFull it keeps the units in memory, per key, and
writes them at the first chance once there is room again (a try at most every RETRY_SECONDS, and at
close). Quotas are still enforced, from the stored usage plus what is held here; rate limits from an
in-memory GCRA per key (which starts from an empty bucket: a key may get one extra burst of its
per-minute limit as the disk fills up, and again once it is written to).

What is held is lost only if the process stops while the disk is still full: `close` then logs each
key's unwritten units. The held units are the `fathom_key_usage_unwritten_units` gauge, and every unit
that could not be written at once counts in `fathom_key_usage_deferred_units_total`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.auth import scopes as scope
from service.auth.keys import ApiKey, Keys, quota_exceeded, rate_limited
from service.errors import StorageFull

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

log = logging.getLogger("fathom")

# Between tries to write held usage while the disk is (probably) still full.
RETRY_SECONDS = 1.0


class DeferredUsage:
    """The Keys protocol over another key store, holding usage in memory while it cannot be written."""

    def __init__(
        self,
        store: Keys,
        *,
        unwritten: Gauge | None = None,
        deferred: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._unwritten = unwritten
        self._deferred = deferred
        self._clock = clock
        self._lock = threading.Lock()
        # Signed units per key not yet in the store (a refund of held units makes it smaller).
        self._held: defaultdict[str, int] = defaultdict(int)
        # GCRA's theoretical arrival time per key, kept here while usage is held.
        self._tat: dict[str, float] = {}
        self._next_try = 0.0

    @property
    def store(self) -> Keys:
        return self._store

    def held(self) -> dict[str, int]:
        """Units per key not yet written to the store."""
        with self._lock:
            return {name: units for name, units in self._held.items() if units}

    # --- the writes a read makes ------------------------------------------------------------------

    def charge(self, name: str, units: int) -> None:
        # While usage is held, charges stay in memory: the store's own quota check would miss it.
        if self._write_held():
            try:
                self._store.charge(name, units)
                return
            except StorageFull:
                pass
        self._charge_in_memory(name, units)

    def refund(self, name: str, units: int) -> None:
        with self._lock:
            # Units charged in memory are given back in memory: nothing to write.
            taken = min(units, max(self._held[name], 0))
            self._hold(name, -taken)
        rest = units - taken
        if rest:
            try:
                self._store.refund(name, rest)
            except StorageFull:
                with self._lock:
                    self._hold(name, -rest)
                self._count_deferred(rest)

    def admit(self, name: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not self.held():
            try:
                self._store.admit(name, now)
                return
            except StorageFull:
                pass
        self._admit_in_memory(name, now)

    def _charge_in_memory(self, name: str, units: int) -> None:
        """Charge from what is known: the stored usage (readable on a full disk) and what is held."""
        key = self._key(name)
        with self._lock:
            used = (key.used if key is not None else 0) + self._held[name]
            if key is not None and key.quota is not None and used + units > key.quota:
                raise quota_exceeded(units, key.quota, used)
            self._hold(name, units)
        self._count_deferred(units)

    def _admit_in_memory(self, name: str, now: float) -> None:
        """GCRA as KeyStore.admit, on a time kept here."""
        key = self._key(name)
        if key is None or key.rate_limit is None:
            return
        interval = 60.0 / key.rate_limit
        with self._lock:
            tat = max(self._tat.get(name, now), now)
            wait = tat - now - (60.0 - interval)
            if wait > 0:
                raise rate_limited(key.rate_limit, wait)
            self._tat[name] = tat + interval

    def _write_held(self, *, force: bool = False) -> bool:
        """Write held usage to the store (a try at most every RETRY_SECONDS unless `force`d); whether
        nothing is held any more."""
        with self._lock:
            if not any(self._held.values()):
                return True
            if not force and self._clock() < self._next_try:
                return False
            self._next_try = self._clock() + RETRY_SECONDS
            held = {name: units for name, units in self._held.items() if units}
        for name, units in held.items():
            try:
                self._store.add_usage(name, units)
            except StorageFull:
                return False
            with self._lock:
                self._hold(name, -units)
        with self._lock:
            return not any(self._held.values())

    def _hold(self, name: str, units: int) -> None:
        """Change a key's held units; the caller holds the lock."""
        self._held[name] += units
        if self._unwritten is not None:
            self._unwritten.inc(units)

    def _count_deferred(self, units: int) -> None:
        if self._deferred is not None:
            self._deferred.inc(units)

    def _key(self, name: str) -> ApiKey | None:
        return next((key for key in self._store.list() if key.name == name), None)

    # --- everything else goes straight to the store -----------------------------------------------

    def close(self) -> None:
        self._write_held(force=True)
        lost = self.held()
        if lost:
            log.error(
                "the key store still has no room: usage not written, lost with this process: %s",
                ", ".join(f"{name} {units} unit(s)" for name, units in sorted(lost.items())),
            )
        self._store.close()

    def create(
        self,
        name: str,
        *,
        quota: int | None = None,
        rate_limit: int | None = None,
        scopes: frozenset[str] = scope.DEFAULT_SCOPES,
        collections: frozenset[str] | None = None,
        origins: frozenset[str] | None = None,
    ) -> str:
        return self._store.create(
            name, quota=quota, rate_limit=rate_limit, scopes=scopes, collections=collections, origins=origins
        )

    def public_origins(self) -> frozenset[str]:
        return self._store.public_origins()

    def list(self) -> list[ApiKey]:
        return self._store.list()

    def revoke(self, name: str) -> bool:
        return self._store.revoke(name)

    def authenticate(self, raw: str) -> ApiKey | None:
        return self._store.authenticate(raw)

    def add_usage(self, name: str, units: int) -> None:
        self._store.add_usage(name, units)
