"""`fathom analytics`: the report GET /v1/analytics gives, read from the state store and printed."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from service.analytics.event_store import open_events
from service.analytics.report import DAY, MAX_DAYS, QueryCount, Report, summarise
from service.cli_options import collection_name
from service.settings import Settings


def days_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_DAYS}, got {value}")
    return value


def add_command(commands: Any, config: argparse.ArgumentParser) -> None:
    """The `analytics` subcommand, on `fathom`'s subparsers."""
    parser = commands.add_parser(
        "analytics",
        help="what a collection's visitors searched for, found nothing for and clicked",
        parents=[config],
    )
    parser.add_argument("--collection", required=True, type=collection_name)
    parser.add_argument("--days", type=days_count, default=30, help=f"the last N days, 1 to {MAX_DAYS} (30)")
    parser.add_argument("--json", action="store_true", help="print the report as GET /v1/analytics answers")
    parser.set_defaults(handler=analytics)


def analytics(args: argparse.Namespace, settings: Settings) -> int:
    store = open_events(settings)
    try:
        now = time.time()
        since = now - args.days * DAY
        report = summarise(
            args.collection,
            args.days,
            store.searches(args.collection, since),
            store.clicks(args.collection, since),
            now=now,
        )
    finally:
        store.close()
    print(json.dumps(asdict(report), indent=2) if args.json else as_text(report))
    return 0


def as_text(report: Report) -> str:
    rate = "-" if report.click_through_rate is None else f"{report.click_through_rate * 100:.1f}%"
    first = "-" if report.mean_first_click_position is None else f"{report.mean_first_click_position:.2f}"
    lines = [
        f"collection {report.collection}, last {report.days} days",
        f"searches: {report.searches} ({report.requests} requests with typed prefixes and next pages)",
        f"click-through rate: {rate}; mean position of the first click: {first}",
        "",
        *table("top queries", report.top_queries),
        *table("queries with no results", report.no_result_queries),
        *table("queries with no clicks", report.no_click_queries),
        "clicks by position: "
        + (", ".join(f"{p.position}: {p.clicks}" for p in report.clicks_by_position) or "none"),
        "",
        f"{'DAY':<12} {'SEARCHES':>8} {'REQUESTS':>8} {'P50 MS':>9} {'P95 MS':>9}",
    ]
    for day in report.per_day:
        p50 = "-" if day.p50_ms is None else f"{day.p50_ms:.1f}"
        p95 = "-" if day.p95_ms is None else f"{day.p95_ms:.1f}"
        lines.append(f"{day.day:<12} {day.searches:>8} {day.requests:>8} {p50:>9} {p95:>9}")
    return "\n".join(lines)


def table(title: str, rows: list[QueryCount]) -> list[str]:
    body = [f"  {row.count:>6}  {row.query}" for row in rows] or ["  (none)"]
    return [f"{title}:", *body, ""]
