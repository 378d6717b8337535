"""The recorder's buffer with a fake store: bounded, dropping and counting, batches, retention, salts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from msgspec import structs
from prometheus_client import CollectorRegistry

from service.analytics.events import ClickEvent, SearchEvent
from service.analytics.recorder import Recorder
from service.analytics.store import ClickRow, SearchRow
from service.settings import Settings

pytestmark = pytest.mark.anyio
DAY = 86_400.0


class FakeStore:
    """Keeps batches in lists; `broken` makes writes fail as an unavailable database would."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.cutoffs: list[float] = []
        self.salts: list[str] = []
        self.broken = False

    def write(self, searches: Sequence[SearchEvent], clicks: Sequence[ClickEvent]) -> None:
        if self.broken:
            raise OSError("the state database is unavailable")
        self.batches.append((len(searches), len(clicks)))

    def searches(self, collection: str, since: float) -> list[SearchRow]:
        return []

    def clicks(self, collection: str, since: float) -> list[ClickRow]:
        return []

    def delete_before(self, cutoff: float) -> int:
        self.cutoffs.append(cutoff)
        return 0

    def day_salt(self, day: str) -> bytes:
        self.salts.append(day)
        return day.encode().ljust(32, b"-")

    def close(self) -> None:
        pass


def recorder(buffer_events: int = 3) -> tuple[Recorder, FakeStore, CollectorRegistry]:
    settings = Settings()
    settings = structs.replace(
        settings, analytics=structs.replace(settings.analytics, buffer_events=buffer_events)
    )
    registry = CollectorRegistry()
    store = FakeStore()
    made = Recorder(settings, registry)
    made.store = store
    return made, store, registry


def event(number: int) -> SearchEvent:
    return SearchEvent(
        search_id=str(number),
        at=0.0,
        collection="c",
        query="q",
        key_name=None,
        public=False,
        filters="",
        facets="",
        hits=1,
        typo=True,
        prefix=False,
        follow=False,
        latency_ms=1.0,
        degraded=False,
        visitor=None,
    )


async def test_a_full_buffer_drops_and_counts_and_a_flush_writes_one_batch() -> None:
    made, store, registry = recorder(buffer_events=3)
    kept = [made.record_search(event(n)) for n in range(4)] + [
        made.record_click(ClickEvent("1", 0, "d", 1, None))
    ]
    assert kept == [True, True, True, False, False]
    assert registry.get_sample_value("fathom_analytics_events_dropped_total") == 2
    assert registry.get_sample_value("fathom_analytics_events_buffered") == 3
    assert await made.flush() == 3 and store.batches == [(3, 0)]
    assert registry.get_sample_value("fathom_analytics_events_buffered") == 0
    assert made.record_search(event(5))  # room again


async def test_events_the_store_refuses_are_counted_as_lost() -> None:
    made, store, registry = recorder()
    made.record_search(event(1))
    store.broken = True
    assert await made.flush() == 0
    assert registry.get_sample_value("fathom_analytics_events_lost_total") == 1
    assert await made.flush() == 0  # gone, not retried forever


async def test_maintenance_fetches_each_days_salt_and_deletes_past_the_retention_hourly() -> None:
    made, store, _ = recorder()
    now = 1_780_000_000.0
    await made.maintain(now)
    await made.maintain(now + 60)  # same day, within the hour: nothing to do
    await made.maintain(now + DAY)
    assert store.salts == ["2026-05-28", "2026-05-29"]
    assert store.cutoffs == [now - 90 * DAY, now + DAY - 90 * DAY]


async def test_nothing_is_recorded_when_analytics_are_off() -> None:
    settings = Settings()
    settings = structs.replace(settings, analytics=structs.replace(settings.analytics, enabled=False))
    made = Recorder(settings, CollectorRegistry())
    assert not made.record_search(event(1))
    assert made.visitor("10.0.0.1", "Firefox") is None
