"""What an owner asks of the events: top queries, queries that find nothing or get no click, click-through,
searches and latency per day. Pure functions of the rows a store returns.

A search-as-you-type box sends a search for each pause in typing: `bou`, `bounda`, `boundary layer`. A
visitor's search whose query the same visitor's next search, within `session_seconds`, extends (its
query begins with this one) is a typed prefix: it folds into the completed query and is not counted as a
search of its own, unless the visitor clicked one of its hits (then they found what they wanted there).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.analytics.events import utc_day
from service.analytics.store import ClickRow, SearchRow

# The typing pauses of one query are seconds apart; a new question after a minute is a new search.
SESSION_SECONDS = 60.0
TOP = 20
# The longest period a report covers: a year, leap day included.
MAX_DAYS = 366
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class QueryCount:
    query: str
    count: int


@dataclass(frozen=True, slots=True)
class PositionClicks:
    position: int
    clicks: int


@dataclass(frozen=True, slots=True)
class DayStats:
    day: str
    searches: int  # after prefixes fold into their completed query
    requests: int  # every search request answered, typed prefixes and next pages included
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True, slots=True)
class Report:
    collection: str
    days: int
    searches: int
    requests: int
    top_queries: list[QueryCount]
    no_result_queries: list[QueryCount]
    no_click_queries: list[QueryCount]
    click_through_rate: float | None  # searches with a click / searches; None without searches
    mean_first_click_position: float | None
    clicks_by_position: list[PositionClicks]
    per_day: list[DayStats] = field(default_factory=list)


def completed_searches(
    rows: Sequence[SearchRow], clicked: set[str], session_seconds: float
) -> list[SearchRow]:
    """The searches that count, oldest first: next pages and typed prefixes left out (see the module)."""
    firsts = [row for row in rows if not row.follow]
    following: dict[str, SearchRow] = {}  # search_id -> the same visitor's next search
    last: dict[str, SearchRow] = {}
    for row in firsts:
        if row.visitor is not None:
            if row.visitor in last:
                following[last[row.visitor].search_id] = row
            last[row.visitor] = row
    return [
        row
        for row in firsts
        if not _typed_prefix(row, following.get(row.search_id), clicked, session_seconds)
    ]


def _typed_prefix(row: SearchRow, nxt: SearchRow | None, clicked: set[str], session_seconds: float) -> bool:
    return (
        nxt is not None
        and row.search_id not in clicked
        and nxt.at - row.at <= session_seconds
        and nxt.query != row.query
        and nxt.query.startswith(row.query)
    )


def page_owners(rows: Sequence[SearchRow]) -> dict[str, str]:
    """Each next page's search id -> the id of the first page it continues (same visitor and query)."""
    owners: dict[str, str] = {}
    latest: dict[tuple[str | None, str], str] = {}
    for row in rows:
        if not row.follow:
            latest[(row.visitor, row.query)] = row.search_id
        elif (first := latest.get((row.visitor, row.query))) is not None:
            owners[row.search_id] = first
    return owners


def first_clicks(rows: Sequence[SearchRow], clicks: Iterable[ClickRow]) -> dict[str, int]:
    """Search id -> the position of its first click (clicks come oldest first); pages count as theirs."""
    owners = page_owners(rows)
    firsts: dict[str, int] = {}
    for click in clicks:
        firsts.setdefault(owners.get(click.search_id, click.search_id), click.position)
    return firsts


def counted(queries: Iterable[str], top: int = TOP) -> list[QueryCount]:
    """Most frequent first; ties by query, so the answer does not depend on storage order."""
    tally = Counter(queries)
    return [QueryCount(q, n) for q, n in sorted(tally.items(), key=lambda item: (-item[1], item[0]))[:top]]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a latency some request actually had."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 3)


def per_day(rows: Sequence[SearchRow], kept: Sequence[SearchRow], days: int, now: float) -> list[DayStats]:
    """One entry per UTC day of the period, oldest first, days without searches included (a plot's x)."""
    names = [utc_day(now - DAY * back) for back in range(days - 1, -1, -1)]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for row in rows:
        latencies.setdefault(utc_day(row.at), []).append(row.latency_ms)
    searches = Counter(utc_day(row.at) for row in kept)
    return [
        DayStats(
            name,
            searches[name],
            len(latencies[name]),
            percentile(latencies[name], 0.5),
            percentile(latencies[name], 0.95),
        )
        for name in names
    ]


def summarise(
    collection: str,
    days: int,
    rows: Sequence[SearchRow],
    clicks: Sequence[ClickRow],
    *,
    now: float | None = None,
    session_seconds: float = SESSION_SECONDS,
) -> Report:
    """The report over `rows` (the collection's searches of the period, oldest first) and their clicks."""
    now = time.time() if now is None else now
    firsts = first_clicks(rows, clicks)
    kept = completed_searches(rows, set(firsts), session_seconds)
    clicked = [row for row in kept if row.search_id in firsts]
    positions = Counter(click.position for click in clicks)
    return Report(
        collection=collection,
        days=days,
        searches=len(kept),
        requests=len(rows),
        top_queries=counted(row.query for row in kept),
        no_result_queries=counted(row.query for row in kept if row.hits == 0),
        no_click_queries=counted(row.query for row in kept if row.hits > 0 and row.search_id not in firsts),
        click_through_rate=round(len(clicked) / len(kept), 4) if kept else None,
        mean_first_click_position=(
            round(sum(firsts[row.search_id] for row in clicked) / len(clicked), 3) if clicked else None
        ),
        clicks_by_position=[PositionClicks(p, n) for p, n in sorted(positions.items())],
        per_day=per_day(rows, kept, days, now),
    )
