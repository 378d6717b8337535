"""The analytics report from rows: grouping, typed prefixes folding into their query, clicks, days."""

from __future__ import annotations

import itertools

from service.analytics.events import normalised, visitor_hash
from service.analytics.report import QueryCount, completed_searches, percentile, summarise
from service.analytics.store import ClickRow, SearchRow

NOW = 1_780_000_000.0  # a fixed instant, so days are named the same on every run
_ids = itertools.count()


def search(
    query: str,
    at: float,
    visitor: str | None = "v1",
    *,
    hits: int = 5,
    follow: bool = False,
    latency: float = 10.0,
) -> SearchRow:
    return SearchRow(f"s{next(_ids)}", NOW - 3600 + at, normalised(query), hits, follow, latency, visitor)


def test_queries_are_grouped_by_case_and_whitespace() -> None:
    assert normalised("  Boundary\tLAYER \n flow ") == "boundary layer flow"
    rows = [search("Boundary Layer", 0, "a"), search("boundary  layer", 0, "b"), search("heat", 0, "c")]
    report = summarise("c", 7, rows, [], now=NOW)
    assert report.top_queries == [QueryCount("boundary layer", 2), QueryCount("heat", 1)]


def test_a_typed_prefix_folds_into_the_query_it_became() -> None:
    rows = [search("bou", 0), search("bounda", 1), search("boundary layer", 2), search("heat", 300)]
    kept = completed_searches(rows, set(), session_seconds=60)
    assert [row.query for row in kept] == ["boundary layer", "heat"]


def test_prefixes_of_other_visitors_or_after_a_pause_or_clicked_do_not_fold() -> None:
    rows = [
        search("bou", 0, "a"),
        search("boundary", 1, "b"),
        search("wing", 0, "a"),
        search("wing flutter", 200, "a"),
    ]
    assert [row.query for row in completed_searches(rows, set(), 60)] == [
        "bou",
        "boundary",
        "wing",
        "wing flutter",
    ]
    clicked = search("heat", 0, "c")
    rows = [clicked, search("heat transfer", 1, "c")]
    assert len(completed_searches(rows, {clicked.search_id}, 60)) == 2


def test_no_results_no_clicks_click_through_and_first_click_position() -> None:
    found, other, nothing = search("wing", 0, "a"), search("heat", 0, "b"), search("zzz", 0, "c", hits=0)
    page = search("wing", 5, "a", follow=True)
    clicks = [ClickRow(page.search_id, 12), ClickRow(found.search_id, 3), ClickRow(other.search_id, 1)]
    report = summarise("c", 7, [found, other, nothing, page], clicks, now=NOW)
    assert report.searches == 3 and report.requests == 4  # the next page is not a search of its own
    assert report.no_result_queries == [QueryCount("zzz", 1)]
    assert report.no_click_queries == []
    assert report.click_through_rate == round(2 / 3, 4)
    # wing's first click came on its next page (position 12), heat's at 1
    assert report.mean_first_click_position == 6.5
    assert [(p.position, p.clicks) for p in report.clicks_by_position] == [(1, 1), (3, 1), (12, 1)]


def test_every_day_of_the_period_is_listed_with_its_latency_percentiles() -> None:
    rows = [search("q", 0, latency=ms) for ms in (10, 20, 30, 40, 100)]
    report = summarise("c", 3, rows, [], now=NOW)
    assert len(report.per_day) == 3 and report.per_day[0].searches == 0 and report.per_day[0].p50_ms is None
    today = report.per_day[-1]
    assert (today.requests, today.p50_ms, today.p95_ms) == (5, 30, 100)
    assert percentile([], 0.5) is None


def test_nothing_to_report_is_not_a_rate() -> None:
    report = summarise("c", 1, [], [], now=NOW)
    assert (
        report.searches == 0
        and report.click_through_rate is None
        and report.mean_first_click_position is None
    )


def test_a_visitor_hash_depends_on_the_days_salt() -> None:
    monday, tuesday = b"m" * 32, b"t" * 32
    assert visitor_hash(monday, "10.0.0.1", "Firefox") == visitor_hash(monday, "10.0.0.1", "Firefox")
    assert visitor_hash(monday, "10.0.0.1", "Firefox") != visitor_hash(tuesday, "10.0.0.1", "Firefox")
    assert "10.0.0.1" not in visitor_hash(monday, "10.0.0.1", "Firefox")
