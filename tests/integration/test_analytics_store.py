"""The event store contract on both adapters: SQLite under data_dir and PostgreSQL shared by replicas.

Two stores on one state stand for two replicas: the report aggregates the events each of them wrote,
and both hash visitors with the same salt of the day.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.analytics.event_store import open_events
from service.analytics.events import ClickEvent, SearchEvent
from service.analytics.report import summarise
from service.analytics.store import EventStore
from tests.integration.state_db import ADAPTERS, state_settings

Opener = Callable[[], EventStore]


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[EventStore] = []
    with state_settings(request.param, tmp_path) as settings:

        def open_one() -> EventStore:
            opened.append(open_events(settings))
            return opened[-1]

        yield open_one
        for store in opened:
            store.close()


def searched(
    search_id: str, query: str, at: float, *, collection: str = "docs", hits: int = 3
) -> SearchEvent:
    return SearchEvent(
        search_id=search_id,
        at=at,
        collection=collection,
        query=query,
        key_name="site",
        public=True,
        filters="lang",
        facets="",
        hits=hits,
        typo=True,
        prefix=False,
        follow=False,
        latency_ms=12.5,
        degraded=False,
        visitor="v",
    )


def test_two_replicas_events_make_one_report(opener: Opener) -> None:
    one, two = opener(), opener()
    now = time.time()
    one.write([searched("a", "wing", now - 30), searched("x", "wing", now, collection="other")], [])
    two.write([searched("b", "heat", now - 20, hits=0), searched("c", "wing", now - 10)], [])
    # A click reaches a replica other than the one that answered the search, before or after it is written.
    one.write([], [ClickEvent("c", now, "doc-1", 1, "v")])
    searches, clicks = two.searches("docs", now - 60), two.clicks("docs", now - 60)
    assert [row.search_id for row in searches] == ["a", "b", "c"]
    report = summarise("docs", 1, searches, clicks, now=now)
    assert [(q.query, q.count) for q in report.top_queries] == [("wing", 2), ("heat", 1)]
    assert [(q.query, q.count) for q in report.no_result_queries] == [("heat", 1)]
    assert report.click_through_rate == round(1 / 3, 4)


def test_old_events_are_deleted_everywhere(opener: Opener) -> None:
    one, two = opener(), opener()
    now = time.time()
    one.write([searched("old", "wing", now - 100 * 86_400), searched("new", "wing", now)], [])
    two.write([], [ClickEvent("old", now - 100 * 86_400, "d", 1, None), ClickEvent("new", now, "d", 2, None)])
    assert two.delete_before(now - 90 * 86_400) == 2
    assert [row.search_id for row in one.searches("docs", 0)] == ["new"]
    assert [click.position for click in one.clicks("docs", 0)] == [2]


def test_replicas_share_the_days_salt_and_forget_yesterdays(opener: Opener) -> None:
    one, two = opener(), opener()
    monday = one.day_salt("2026-11-30")
    assert two.day_salt("2026-11-30") == monday and len(monday) == 32
    tuesday = two.day_salt("2026-12-01")
    assert tuesday != monday
    # Monday's salt is gone: asking for it again makes a new one, so old hashes match nothing.
    assert one.day_salt("2026-11-30") != monday
