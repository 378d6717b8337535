"""Search analytics as an owner meets them: searches and clicks through the HTTP API, the report from
GET /v1/analytics and `fathom analytics`, a full buffer that drops (and counts) instead of holding up a
search, and events past the retention deleted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from msgspec import structs

from service.analytics.events import SearchEvent
from service.analytics.store import SqliteEventStore
from service.auth.scopes import SEARCH
from service.settings import Settings
from service.stores import open_keys
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
COLLECTION = "cran"
SITE = "https://site.example"
FATHOM = str(Path(sys.executable).with_name("fathom"))
NO_SUCH_YEAR = {"year": 3000}  # a filter nothing matches: the one way hybrid search finds nothing


@dataclass(frozen=True)
class Keys:
    admin: dict[str, str]
    searcher: dict[str, str]
    public: dict[str, str]


def analytics_settings(data_dir: Path, **analytics: Any) -> Settings:
    settings = search_settings(data_dir, rerank={"enabled": False})
    # Written every 50 ms: a report right after the searches sees them without waiting.
    changes: dict[str, Any] = {"flush_seconds": 0.05, **analytics}
    return structs.replace(settings, analytics=structs.replace(settings.analytics, **changes))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys]:
    data_dir = tmp_path_factory.mktemp("analytics")
    settings = analytics_settings(data_dir)
    anyio.run(index_documents, settings, COLLECTION, cranfield(40))
    store = open_keys(settings)
    try:
        public = store.create(
            "widget", rate_limit=1000, collections=frozenset({COLLECTION}), origins=frozenset({SITE})
        )
    finally:
        store.close()
    keys = Keys(
        admin={"Authorization": f"Bearer {new_key(settings, 'owner')}"},
        searcher={"Authorization": f"Bearer {new_key(settings, 'backend', scopes=(SEARCH,))}"},
        public={"Authorization": f"Bearer {public}", "Origin": SITE, "User-Agent": "Firefox/140"},
    )
    return data_dir, keys


@pytest.fixture
async def api(
    indexed: tuple[Path, Keys], tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Keys, Path]]:
    data_dir, keys = indexed
    (data_dir / "analytics.sqlite3").unlink(missing_ok=True)  # each test reports on its own events
    async with running(analytics_settings(data_dir)) as client:
        yield client, keys, data_dir


async def search(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, **options: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/search", json={"query": query, "collection": COLLECTION, **options}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def report(client: httpx.AsyncClient, keys: Keys, days: int = 7) -> dict[str, Any]:
    response = await client.get(
        "/v1/analytics", params={"collection": COLLECTION, "days": days}, headers=keys.admin
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_searches_and_clicks_make_the_report(api: tuple[httpx.AsyncClient, Keys, Path]) -> None:
    client, keys, data_dir = api
    # A visitor types into the widget: three searches as they type, one query in the end.
    for typed in ("bou", "boundary la", "Boundary  Layer"):
        await search(client, keys.public, typed, prefix=True)
    chosen = await search(client, keys.public, "heat transfer")
    await search(client, keys.searcher, "BOUNDARY LAYER")  # a backend, another visitor
    await search(client, keys.searcher, "supersonic wing", filter=NO_SUCH_YEAR)
    clicked = await client.post(
        "/v1/events",
        json={"type": "click", "search_id": chosen["id"], "hit_id": chosen["hits"][1]["id"], "position": 2},
        headers=keys.public,
    )
    assert clicked.status_code == 202 and clicked.json() == {"recorded": True}

    body = await report(client, keys)
    assert body["searches"] == 4 and body["requests"] == 6
    assert body["top_queries"][0] == {"query": "boundary layer", "count": 2}
    assert body["no_result_queries"] == [{"query": "supersonic wing", "count": 1}]
    assert {"query": "heat transfer", "count": 1} not in body["no_click_queries"]
    assert body["click_through_rate"] == 0.25 and body["mean_first_click_position"] == 2
    assert body["clicks_by_position"] == [{"position": 2, "clicks": 1}]
    today = body["per_day"][-1]
    assert len(body["per_day"]) == 7 and today["searches"] == 4 and today["requests"] == 6
    assert 0 < today["p50_ms"] <= today["p95_ms"]

    # The same report from the command line, on the same state.
    printed = fathom_cli(data_dir, "analytics", "--collection", COLLECTION, "--days", "7", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == body
    text = fathom_cli(data_dir, "analytics", "--collection", COLLECTION)
    assert text.returncode == 0 and "click-through rate: 25.0%" in text.stdout
    assert re.search(r"^\s+2\s+boundary layer$", text.stdout, re.MULTILINE)


async def test_no_address_or_user_agent_is_stored(api: tuple[httpx.AsyncClient, Keys, Path]) -> None:
    client, keys, data_dir = api
    await search(client, keys.public, "wing flutter")
    await report(client, keys)  # written by now
    raw = (data_dir / "analytics.sqlite3").read_bytes() + (data_dir / "analytics.sqlite3-wal").read_bytes()
    assert b"wing flutter" in raw
    assert b"127.0.0.1" not in raw and b"Firefox" not in raw


async def test_bad_events_get_a_400_that_says_what_to_fix(api: tuple[httpx.AsyncClient, Keys, Path]) -> None:
    client, keys, _ = api
    good = {
        "type": "click",
        "search_id": "6f1c1a3e-8f0b-4d55-9a55-0c0b8e3f1a11",
        "hit_id": "d1",
        "position": 1,
    }
    cases = [
        ({**good, "type": "view"}, "type"),
        ({**good, "search_id": "not-an-id"}, "POST /v1/search response"),
        ({**good, "position": 0}, "position"),
        ({**good, "extra": 1}, "extra"),
        ({k: v for k, v in good.items() if k != "hit_id"}, "hit_id"),
    ]
    for body, named in cases:
        response = await client.post("/v1/events", json=body, headers=keys.public)
        assert response.status_code == 400, (body, response.text)
        assert named in response.json()["error"]["message"]
        assert "Traceback" not in response.text
    huge = await client.post("/v1/events", json={**good, "hit_id": "x" * 5000}, headers=keys.public)
    assert huge.status_code == 413
    assert (await client.post("/v1/events", json=good)).status_code == 401


async def test_the_report_needs_an_admin_key_and_a_sane_period(
    api: tuple[httpx.AsyncClient, Keys, Path],
) -> None:
    client, keys, _ = api
    forbidden = await client.get("/v1/analytics", params={"collection": COLLECTION}, headers=keys.searcher)
    assert forbidden.status_code == 403
    public = await client.get("/v1/analytics", params={"collection": COLLECTION}, headers=keys.public)
    assert public.status_code == 403
    periods: list[dict[str, str | int]] = [
        {"collection": COLLECTION, "days": 0},
        {"collection": COLLECTION, "days": 400},
        {"collection": "bad name!"},
    ]
    for params in periods:
        bad = await client.get("/v1/analytics", params=params, headers=keys.admin)
        assert bad.status_code == 400, params
    assert (await client.get("/v1/analytics", headers=keys.admin)).status_code == 400


async def test_a_full_buffer_drops_and_counts_instead_of_holding_up_searches(
    indexed: tuple[Path, Keys],
) -> None:
    data_dir, keys = indexed
    # Two events fit, and nothing is written during the test: the third and fourth are dropped.
    async with running(analytics_settings(data_dir, buffer_events=2, flush_seconds=3600)) as client:
        for query in ("one", "two", "three", "four"):
            await search(client, keys.searcher, query)
        metrics = (await client.get("/metrics")).text
    assert "fathom_analytics_events_dropped_total 2.0" in metrics
    assert "fathom_analytics_events_buffered 2.0" in metrics


async def test_events_past_the_retention_are_deleted(indexed: tuple[Path, Keys]) -> None:
    data_dir, keys = indexed
    path = data_dir / "analytics.sqlite3"
    path.unlink(missing_ok=True)
    store = SqliteEventStore(path)
    for age_days in (100, 10):
        at = time.time() - age_days * 86_400
        store.write([old_search(f"{age_days} days ago", at)], [])
    store.close()
    async with running(analytics_settings(data_dir, retention_days=30)) as client:
        body = await report(client, keys, days=366)
    assert [q["query"] for q in body["top_queries"]] == ["10 days ago"]
    store = SqliteEventStore(path)
    try:
        assert [row.query for row in store.searches(COLLECTION, 0)] == ["10 days ago"]
    finally:
        store.close()


def old_search(query: str, at: float) -> SearchEvent:
    return SearchEvent(
        search_id=f"old-{query}",
        at=at,
        collection=COLLECTION,
        query=query,
        key_name="k",
        public=False,
        filters="",
        facets="",
        hits=3,
        typo=True,
        prefix=False,
        follow=False,
        latency_ms=5.0,
        degraded=False,
        visitor=None,
    )


def fathom_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FATHOM_DATA_DIR": str(data_dir)}
    env.pop("FATHOM_CONFIG", None)
    return subprocess.run([FATHOM, *args], capture_output=True, text=True, env=env, timeout=60, check=False)
