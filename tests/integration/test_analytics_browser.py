"""The analytics in a real browser: a visitor's search and click in the widget on another site are
reported (POST /v1/events with the public key), and the owner's page /analytics, given an admin key,
draws the plots and fills the tables under the page's Content-Security-Policy. Saves a screenshot
(analytics.png in the test's tmp folder)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import load_settings
from service.testing.live_server import fathom_serve, free_ports
from tests.integration.axe import axe_violations
from tests.integration.search_app import cranfield, index_documents
from tests.integration.static_site import static_site
from tests.integration.test_widget_browser import (
    BROWSER_TIMEOUT_MS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    COLLECTION,
    EMPTY,
    HOSTILE,
    public_key,
    server_config,
    site_page,
    wait_for_query,
)

pytestmark = pytest.mark.anyio


# The widget test's site serves its three collections; here every one is searched with the one key.
SITES = (COLLECTION, HOSTILE, EMPTY)


@dataclass(frozen=True)
class Served:
    fathom: str
    origin: str
    admin: str


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("analytics-browser")
    fathom_port, site_port = free_ports(2)
    origin = f"http://127.0.0.1:{site_port}"
    config = folder / "fathom.toml"
    # Events written every 200 ms, so the report sees a click soon after it is made.
    config.write_text(server_config(folder / "data", fathom_port) + "\n[analytics]\nflush_seconds = 0.2\n")
    documents = [replace(d, metadata={**d.metadata, "url": f"{origin}/doc/{d.id}"}) for d in cranfield(30)]
    report = asyncio.run(index_documents(load_settings(config, environ={}), COLLECTION, documents))
    assert report.added == len(documents)
    key = public_key(config, COLLECTION, [origin])
    admin = admin_key(config)
    with (
        fathom_serve(config, port=fathom_port, log=folder / "serve.log") as server,
        static_site(site_port, lambda path: site_page(server.url, dict.fromkeys(SITES, key), path)) as site,
    ):
        yield Served(server.url, site, admin)


def admin_key(config: Path) -> str:
    command = [sys.executable, "-m", "service.cli", "--config", str(config), "keys", "create"]
    created = subprocess.run(
        [*command, "--name", "owner", "--scope", "admin"], capture_output=True, text=True, check=True
    )
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        tab = await browser.new_page(viewport={"width": 1000, "height": 1400})
        tab.set_default_timeout(BROWSER_TIMEOUT_MS)
        errors: list[str] = []
        refused: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        yield tab
        await browser.close()
        assert errors == [], f"the page raised: {errors}"
        assert refused == [], f"the policy refused: {refused}"


def analytics(served: Served) -> dict[str, Any]:
    response = httpx.get(
        f"{served.fathom}/v1/analytics",
        params={"collection": COLLECTION, "days": 7},
        headers={"Authorization": f"Bearer {served.admin}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def until_clicked(served: Served, deadline_s: float = 30.0) -> dict[str, Any]:
    """The report once a click is in it: the widget's report is sent as the page is left."""
    ends = time.monotonic() + deadline_s
    while True:
        body = analytics(served)
        if body["clicks_by_position"] or time.monotonic() > ends:
            return body
        time.sleep(0.3)


async def test_a_chosen_hit_is_reported_and_the_page_shows_it(
    page: Any, served: Served, tmp_path: Path
) -> None:
    await page.goto(served.origin)
    box = page.get_by_role("combobox")
    await box.fill("heat transfer")
    await wait_for_query(page, "heat transfer")
    await box.press("ArrowDown")
    await box.press("ArrowDown")
    chosen = await page.get_by_role("option").nth(1).get_attribute("data-id")
    await box.press("Enter")  # follows the hit's link: the click is reported on the way out
    await page.wait_for_url(f"{served.origin}/doc/{chosen}")

    body = until_clicked(served)
    assert body["clicks_by_position"] == [{"position": 2, "clicks": 1}]
    assert body["click_through_rate"] == 1.0 and body["top_queries"] == [
        {"query": "heat transfer", "count": 1}
    ]

    await page.goto(f"{served.fathom}/analytics?collection={COLLECTION}&days=7")
    await page.get_by_label("Admin key").fill(served.admin)
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_selector("#report:not([hidden])")
    top = page.locator("#top-queries tbody tr")
    assert await top.count() == 1
    assert await top.first.locator("td").all_inner_texts() == ["heat transfer", "1"]
    assert await page.locator("#no-result-queries tbody td.empty").count() == 1
    assert await page.locator("#ctr").inner_text() == "100.0 %"
    assert await page.locator("#per-day-plot svg rect.bar").count() == 7  # one bar per day
    # Positions 1 to 10, the clicked second one the only bar with a height
    bars = page.locator("#position-plot svg rect.bar")
    heights = [
        float(h or 0) for h in await bars.evaluate_all("els => els.map(e => e.getAttribute('height'))")
    ]
    assert len(heights) == 10 and [h > 0 for h in heights] == [False, True] + [False] * 8
    assert await page.locator("#latency-plot svg circle.p95-dot").count() == 1  # one day with searches
    await page.screenshot(path=str(tmp_path / "analytics.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'analytics.png'}")
    assert await axe_violations(page) == [], "/analytics with a report shown"


async def test_a_wrong_key_is_said_on_the_page(page: Any, served: Served) -> None:
    await page.goto(f"{served.fathom}/analytics")
    await page.get_by_label("Admin key").fill("fth_wrong")
    await page.get_by_label("Collection").fill(COLLECTION)
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_selector("#status.error")
    assert "invalid or revoked API key" in await page.locator("#status").inner_text()
    assert await page.locator("#report").is_hidden()
