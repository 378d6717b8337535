"""The recorder: events wait in a bounded in-memory buffer and a background task writes them in batches.

A search only appends to a list (no I/O, no lock: the event loop is the one writer); when the list is
full the event is dropped and counted in /metrics, so recording can neither slow nor fail a search. The
task writes a batch every `flush_seconds` off the event loop, deletes events past the retention once an
hour, and fetches each UTC day's visitor salt. A process killed with -9 loses what the buffer held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.analytics.event_store import open_events
from service.analytics.events import ClickEvent, SearchEvent, utc_day, visitor_hash
from service.analytics.report import DAY, Report, summarise
from service.analytics.store import EventStore
from service.errors import BackendUnavailable
from service.settings import Settings

log = logging.getLogger("fathom")

ANALYTICS = "analytics"  # the recorder's name in the app's state
RETENTION_CHECK_SECONDS = 3600.0


class AnalyticsMetrics:
    """The recorder's collectors, on the runtime's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.buffered = Gauge(
            "fathom_analytics_events_buffered", "Analytics events waiting in memory", registry=registry
        )
        self.dropped = Counter(
            "fathom_analytics_events_dropped",
            "Analytics events dropped because the buffer was full (searches were not held up)",
            registry=registry,
        )
        self.written = Counter(
            "fathom_analytics_events_written",
            "Analytics events written to the state store",
            registry=registry,
        )
        self.lost = Counter(
            "fathom_analytics_events_lost",
            "Analytics events taken from the buffer that the state store refused (it was unavailable)",
            registry=registry,
        )


_METRICS: WeakKeyDictionary[CollectorRegistry, AnalyticsMetrics] = WeakKeyDictionary()


def analytics_metrics(registry: CollectorRegistry) -> AnalyticsMetrics:
    """The collectors on `registry`, made once: apps built on one runtime (a bench's) share them."""
    if registry not in _METRICS:
        _METRICS[registry] = AnalyticsMetrics(registry)
    return _METRICS[registry]


class Recorder:
    """Buffers events and writes them; answers reports. With analytics off, records nothing."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings.analytics
        # Visitors behind a trusted proxy are told apart by X-Forwarded-For, as the rate limit does.
        self.proxies = settings.server.proxy_networks()
        self._state_settings = settings
        self.metrics = analytics_metrics(registry)
        self.store: EventStore | None = None
        self._searches: list[SearchEvent] = []
        self._clicks: list[ClickEvent] = []
        self._salt: tuple[str, bytes] | None = None  # (UTC day, its salt)
        self._purged_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def visitor(self, address: str, user_agent: str) -> str | None:
        """Today's hash of the visitor; None until today's salt is fetched (the first moments of a day)."""
        if self._salt is None or self._salt[0] != utc_day(time.time()):
            return None
        return visitor_hash(self._salt[1], address, user_agent)

    def record_search(self, event: SearchEvent) -> bool:
        return self._offer(self._searches, event)

    def record_click(self, event: ClickEvent) -> bool:
        return self._offer(self._clicks, event)

    def _offer(self, events: list[Any], event: object) -> bool:
        if not self.enabled:
            return False
        if len(self._searches) + len(self._clicks) >= self.settings.buffer_events:
            self.metrics.dropped.inc()
            return False
        events.append(event)
        self.metrics.buffered.inc()
        return True

    async def flush(self) -> int:
        """Write what is buffered in one batch; the number of events written."""
        searches, clicks = self._searches, self._clicks
        if self.store is None or not (searches or clicks):
            return 0
        self._searches, self._clicks = [], []
        self.metrics.buffered.set(0)
        count = len(searches) + len(clicks)
        try:
            await asyncio.to_thread(self.store.write, searches, clicks)
        except Exception as exc:  # the state store is down or full: these events are gone, and counted
            self.metrics.lost.inc(count)
            log.warning("analytics: %d events could not be written: %s", count, exc)
            return 0
        self.metrics.written.inc(count)
        return count

    async def maintain(self, now: float | None = None) -> None:
        """Fetch today's salt when the day changed; delete events past the retention once an hour."""
        now = time.time() if now is None else now
        if self.store is None:
            return
        day = utc_day(now)
        if self._salt is None or self._salt[0] != day:
            self._salt = (day, await asyncio.to_thread(self.store.day_salt, day))
        if now - self._purged_at >= RETENTION_CHECK_SECONDS:
            cutoff = now - self.settings.retention_days * DAY
            deleted = await asyncio.to_thread(self.store.delete_before, cutoff)
            self._purged_at = now
            if deleted:
                log.info(
                    "analytics: deleted %d events older than %d days", deleted, self.settings.retention_days
                )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_seconds)
            await self.flush()
            try:
                await self.maintain()
            except Exception as exc:  # a background task: log, and try again next round
                log.warning("analytics: maintenance failed: %s", exc)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the store and write in the background; on exit, write what is left and close it."""
        if not self.enabled:
            yield
            return
        try:
            self.store = await asyncio.to_thread(open_events, self._state_settings)
            await self.maintain()
        except Exception as exc:  # the server still serves search without analytics
            log.error("analytics: the event store could not be opened, nothing is recorded: %s", exc)
        task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await self.flush()
            if self.store is not None:
                await asyncio.to_thread(self.store.close)
                self.store = None

    async def report(self, collection: str, days: int) -> Report:
        """The collection's report over the last `days` days; events still in the buffer are written first."""
        if self.store is None:
            why = "switched off ([analytics] enabled = false)" if not self.enabled else "not open"
            raise BackendUnavailable(f"analytics are {why} on this server")
        await self.flush()
        store, now = self.store, time.time()
        since = now - days * DAY
        rows = await asyncio.to_thread(store.searches, collection, since)
        clicks = await asyncio.to_thread(store.clicks, collection, since)
        return summarise(collection, days, rows, clicks, now=now)
