"""The widget in a real browser: Debian's headless Chromium, driven by Playwright, against `fathom serve`.

A site on another origin embeds /widget.js with a public key; the test types a Cranfield query and
checks the results, dropped stale answers, a facet click, paging, and keyboard selection, and saves
a screenshot (widget.png in the test's tmp folder). A second collection holds documents whose every
field is a stored script payload: on the site and on Fathom's own page `/`, none of them may run.
The states a visitor meets are checked too (an error, no results, the searches a query costs), and
axe-core (vendored under vendor/axe-core) finds no serious or critical accessibility violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from service.ingest.documents import Document
from service.runtime import open_writer
from service.settings import Settings, load_settings
from service.testing.live_server import fathom_serve, free_ports
from tests.conftest import bearer, offline_toml
from tests.integration.axe import axe_violations
from tests.integration.search_app import cranfield, index_documents
from tests.integration.static_site import static_site

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no network but loopback, nothing fetched in the background.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COLLECTION = "cranweb"
HOSTILE = "hostile"  # documents whose every field is a stored script payload
EMPTY = "empty"  # a collection with no documents: every search finds nothing
UNAVAILABLE = "Search is unavailable, try again"
WEB_LINK = "relative-breakout"  # the one of them whose url is a web link
# Playwright's 30 s default is short for a search on a CI machine running other test suites.
BROWSER_TIMEOUT_MS = 120_000
PAGE_SIZE = 5

if not os.environ.get("CI"):  # in CI a missing browser fails the run instead (.ci/run installs it)
    pytest.importorskip("playwright.async_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Site:
    fathom: str  # the Fathom server's base URL
    origin: str  # the embedding site's origin
    key: str  # the public key the site embeds
    docs: dict[str, dict[str, Any]]  # id -> metadata
    hostile_key: str  # a public key for HOSTILE, from the site and from Fathom's own page
    empty_key: str  # a public key for EMPTY, from the site


def server_config(data_dir: Path, port: int) -> str:
    return f"""
data_dir = "{data_dir}"
[server]
port = {port}
{offline_toml()}# A busy CI machine must not turn a slow stage into a degraded, differently ordered answer,
# nor rerank a shorter head within the time budget for the widget than for the API call it is compared
# with.
[search]
lexical_timeout = 120
vector_timeout = 120
[search.rerank]
timeout = 120
budget_ms = 0
"""


def site_page(fathom: str, keys: dict[str, str], path: str) -> str:
    """The embedding site: its home page holds the widget, /hostile the widget on HOSTILE, /empty on
    EMPTY; /doc/<id> stands for a document's page."""
    key, hostile_key = keys[COLLECTION], keys[HOSTILE]
    if path.startswith("/doc/"):
        return f"<!doctype html><title>Document {path[5:]}</title><h1>Document {path[5:]}</h1>"
    if path == "/empty":
        widget = f"""<script src="{fathom}/widget.js" data-collection="{EMPTY}" data-key="{keys[EMPTY]}"
        data-facets="kind"></script>"""
    elif path == "/hostile":
        widget = f"""<script src="{fathom}/widget.js" data-collection="{HOSTILE}" data-key="{hostile_key}"
        data-facets="kind,note"></script>"""
    else:
        widget = f"""<script src="{fathom}/widget.js" data-collection="{COLLECTION}" data-key="{key}"
        data-facets="kind,year" data-page-size="{PAGE_SIZE}" data-placeholder="Search the Cranfield papers">
        </script>"""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A site</title></head>
<body><main><h1>A site with Fathom search</h1>
{widget}
</main></body></html>"""


def pwn(tag: str) -> str:
    """What a payload runs if it gets to: records `tag` in window.__pwned and opens a dialog."""
    return f"(window.__pwned=window.__pwned||[]).push('{tag}');alert('{tag}')"


def hostile_documents() -> list[Document]:
    """Every field a payload: markup in title, text and metadata, attribute breakouts, and urls that run
    script (`javascript:`, disguised by case, whitespace and a tab the URL parser drops) or load a
    page of their own (`data:`). Only the last document's url is a web link (relative, with a breakout)."""
    breakout = f'" onmouseover="{pwn("attribute")}" x="'
    urls = {
        "js-url": f"javascript:{pwn('javascript-url')}",
        "js-url-disguised": f" \t\n JaVaScRiPt:{pwn('disguised-url')}",
        "js-url-tab": f"java\tscript:{pwn('tab-url')}",
        "data-url": f"data:text/html,<script>{pwn('data-url')}</script>",
        WEB_LINK: f"/doc/relative{breakout}",
    }
    return [
        Document(
            doc_id,
            f'<script>{pwn("title-" + doc_id)}</script>{breakout}<img src=x onerror="{pwn("title-img")}">',
            f'hostile payload <img src=x onerror="{pwn("text-img")}"> <script>{pwn("text")}</script>'
            f" {breakout}",
            {
                "url": url,
                "kind": f'<img src=x onerror="{pwn("facet-img")}">',
                "note": breakout,
            },
        )
        for doc_id, url in urls.items()
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("widget")
    fathom_port, site_port = free_ports(2)
    origin = f"http://127.0.0.1:{site_port}"
    config = folder / "fathom.toml"
    config.write_text(server_config(folder / "data", fathom_port))
    documents = [replace(d, metadata={**d.metadata, "url": f"{origin}/doc/{d.id}"}) for d in cranfield(60)]
    settings = load_settings(config, environ={})
    report = asyncio.run(index_documents(settings, COLLECTION, documents))
    assert report.added == len(documents)
    hostile = asyncio.run(index_documents(settings, HOSTILE, hostile_documents()))
    assert hostile.added == len(hostile_documents())
    asyncio.run(create_collection(settings, EMPTY))
    # Fathom's own page `/` calls the API from Fathom's origin: a key used there must name that origin too.
    both = [origin, f"http://127.0.0.1:{fathom_port}"]
    keys = {
        COLLECTION: public_key(config, COLLECTION, both),
        HOSTILE: public_key(config, HOSTILE, both),
        EMPTY: public_key(config, EMPTY, [origin]),
    }
    with (
        fathom_serve(config, port=fathom_port, log=folder / "serve.log") as server,
        static_site(site_port, lambda path: site_page(server.url, keys, path)) as served,
    ):
        metadata = {d.id: d.metadata for d in documents}
        yield Site(server.url, served, keys[COLLECTION], metadata, keys[HOSTILE], keys[EMPTY])


async def create_collection(settings: Settings, name: str) -> None:
    async with open_writer(settings) as writer:
        await writer.create_collection(name)


def public_key(config: Path, collection: str, origins: list[str]) -> str:
    """The README's command: a search-only key for one collection, usable from the sites' origins."""
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "--config",
        str(config),
        "keys",
        "create",
        "--name",
        f"site-{collection}",
    ]
    command += ["--public", "--collections", collection, "--rate-limit", "600"]
    command += [argument for origin in origins for argument in ("--origin", origin)]
    created = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "public" in created.stdout and all(origin in created.stdout for origin in origins)
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture
async def page(site: Site) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        tab = await browser.new_page(viewport={"width": 900, "height": 1100})
        tab.set_default_timeout(BROWSER_TIMEOUT_MS)
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        await tab.goto(site.origin)
        yield tab
        await browser.close()
        assert errors == [], f"the page raised: {errors}"


def api_ids(site: Site, query: str, **body: Any) -> list[str]:
    """The hit ids the API itself gives for the widget's request, to compare the rendering with."""
    request = {
        "query": query,
        "collection": COLLECTION,
        "top_k": PAGE_SIZE,
        "facets": ["kind", "year"],
        "prefix": True,  # as the widget asks while the last word has no space after it
        **body,
    }
    headers = {**bearer(site.key), "Origin": site.origin}
    response = httpx.post(f"{site.fathom}/v1/search", json=request, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] == []
    return [hit["id"] for hit in response.json()["hits"]]


async def shown_ids(page: Any) -> list[str]:
    ids: list[str] = await page.locator("[role=option]").evaluate_all("els => els.map(e => e.dataset.id)")
    return ids


async def wait_for_query(page: Any, query: str) -> None:
    await page.wait_for_function(
        "q => { const w = document.querySelector('.fathom-widget');"
        " return w.dataset.query === q && !w.hasAttribute('aria-busy'); }",
        arg=query,
    )


async def test_typing_shows_highlighted_linked_results_debounced(page: Any, site: Site) -> None:
    requests: list[str] = []
    bodies: list[dict[str, Any]] = []

    def sent(request: Any) -> None:
        if request.url.endswith("/v1/search"):
            requests.append(request.url)
            bodies.append(json.loads(request.post_data))

    page.on("request", sent)
    box = page.get_by_role("combobox")
    query = "boundary layer transition"

    await box.press_sequentially(query, delay=20)
    await wait_for_query(page, query)

    # Typed 20 ms apart, the keys fall within one 150 ms debounce; a stalled machine may split them a little.
    assert len(requests) <= len(query) // 4, f"{len(requests)} requests for {len(query)} keystrokes"
    assert await shown_ids(page) == api_ids(site, query)
    assert bodies[-1]["prefix"] is True  # the last word, still being typed, matches as a prefix
    assert await box.get_attribute("aria-expanded") == "true"
    listbox = page.get_by_role("listbox")
    assert await box.get_attribute("aria-controls") == await listbox.get_attribute("id")
    for option in await page.get_by_role("option").all():
        doc_id = await option.get_attribute("data-id")
        assert await option.get_attribute("data-url") == site.docs[doc_id]["url"]  # where choosing it goes
        # Nothing focusable inside an option (axe: nested-interactive): the option itself is the choice.
        assert await option.locator("a, button, input, [href], [tabindex]").count() == 0
    assert await page.locator(".fathom-snippet mark").count() > 0  # highlighted matches


async def test_a_slow_stale_answer_is_dropped(page: Any, site: Site) -> None:
    async def hold_back_shock(route: Any) -> None:
        if (route.request.post_data_json or {}).get("query") == "shock":
            await asyncio.sleep(1.5)
        # The widget may have aborted it meanwhile: exactly what a stale request should get.
        with contextlib.suppress(Exception):
            await route.continue_()

    await page.route("**/v1/search", hold_back_shock)
    box = page.get_by_role("combobox")
    async with page.expect_request(lambda request: '"shock"' in (request.post_data or "")):
        await box.fill("shock")  # the debounced request goes out, and is held back
    await box.fill("heat transfer")
    await wait_for_query(page, "heat transfer")
    await page.wait_for_timeout(2000)  # long after the "shock" answer would have come

    assert await page.locator(".fathom-widget").get_attribute("data-query") == "heat transfer"
    assert await shown_ids(page) == api_ids(site, "heat transfer")


async def test_facet_click_filters_and_keyboard_chooses(page: Any, site: Site, tmp_path: Path) -> None:
    box = page.get_by_role("combobox")
    await box.fill("heat transfer")
    await wait_for_query(page, "heat transfer")
    even = page.locator("button.fathom-facet[data-field=kind][data-value=even]")
    count = int((await even.inner_text()).rsplit("(", 1)[1].rstrip(")"))

    await even.click()
    await page.wait_for_selector("button.fathom-facet[data-field=kind][data-value=even][aria-pressed=true]")
    await wait_for_query(page, "heat transfer")

    # Counts are disjunctive: choosing "even" keeps "odd" listed, and "even"'s count is the new total.
    assert await page.get_by_role("status").inner_text() == f"{count} documents hold these words"
    assert await page.locator("button.fathom-facet[data-field=kind][data-value=odd]").count() == 1
    filtered = await shown_ids(page)
    assert filtered == api_ids(site, "heat transfer", filter={"kind": "even"})
    assert {site.docs[doc_id]["kind"] for doc_id in filtered} == {"even"}

    await page.get_by_role("button", name="More results").click()
    await page.wait_for_function(f"document.querySelectorAll('[role=option]').length > {PAGE_SIZE}")
    paged = await shown_ids(page)
    assert paged[:PAGE_SIZE] == filtered and len(set(paged)) == len(paged)

    await box.focus()
    await box.press("Escape")  # closes the list, keeps the query
    assert await box.get_attribute("aria-expanded") == "false" and await box.input_value() == "heat transfer"
    assert not await page.get_by_role("listbox").is_visible()
    await box.press("ArrowDown")  # opens it again, on the first hit
    await box.press("ArrowDown")
    second = page.get_by_role("option").nth(1)
    assert await box.get_attribute("aria-activedescendant") == await second.get_attribute("id")
    assert await second.get_attribute("aria-selected") == "true"
    chosen = await second.get_attribute("data-id")
    await page.screenshot(path=str(tmp_path / "widget.png"), full_page=True)

    await box.press("Enter")
    await page.wait_for_url(site.docs[chosen]["url"])
    assert await page.title() == f"Document {chosen}"
    print(f"screenshot: {tmp_path / 'widget.png'}")


async def poke_every_hit(page: Any, documents: dict[str, Document], origin: str) -> list[str]:
    """Hovers every title and facet, clicks every title that is not a web link and chooses its hit (a
    click outside the title, as Enter does); the ids of those whose url became a link all the same."""
    linked = []
    for doc_id, document in documents.items():
        option = page.locator(f"[role=option][data-id='{doc_id}']")
        title = option.locator(".fathom-title")
        assert await title.text_content() == document.title  # markup shown as text
        await title.hover()
        if doc_id == WEB_LINK:  # its url is followed when chosen, the breakout inside it
            assert (await option.get_attribute("data-url") or "").startswith(f"{origin}/doc/relative")
            continue
        if await option.locator("a, [href]").count():
            linked.append(doc_id)
        await title.click()
        await option.locator(".fathom-snippet").click()
    for facet in await page.locator("button.fathom-facet").all():
        await facet.hover()
    return linked


async def test_stored_payloads_show_as_text_and_never_run(page: Any, site: Site) -> None:
    """On the site (another origin, no policy of its own) and on Fathom's page `/`: every payload is
    shown as text, only a web url becomes a link, and clicking or choosing the others goes nowhere."""
    dialogs: list[str] = []

    async def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    refused: list[str] = []  # what the page's Content-Security-Policy refused: nothing the page needs
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    documents = {d.id: d for d in hostile_documents()}
    fathom_page = f"{site.fathom}/?" + urlencode(
        {"collection": HOSTILE, "key": site.hostile_key, "facets": "kind,note"}
    )
    for origin, url in ((site.origin, f"{site.origin}/hostile"), (site.fathom, fathom_page)):
        await page.goto(url)
        await page.evaluate(
            "document.addEventListener('fathom:select',"
            " e => (window.__chosen = window.__chosen || []).push(e.detail.id))"
        )
        await page.get_by_role("combobox").fill("hostile payload")
        await wait_for_query(page, "hostile payload")
        assert sorted(await shown_ids(page)) == sorted(documents)

        linked = await poke_every_hit(page, documents, origin)
        await page.wait_for_timeout(500)  # for anything a click set off

        assert await page.evaluate("window.__pwned") is None, f"payloads ran on {url}"
        assert dialogs == [], f"payloads opened dialogs on {url}"
        assert linked == [], f"not web links, yet links on {url}"
        assert page.url == url, f"a click navigated away from {url}"
        assert await page.locator(".fathom-widget img, .fathom-widget script").count() == 0
        note = page.locator("button.fathom-facet[data-field=note]")
        assert await note.get_attribute("data-value") == documents["js-url"].metadata["note"]
        # Choosing a hit with no web url still tells the page, which may handle the choice itself.
        chosen = await page.evaluate("window.__chosen")
        assert set(chosen) == set(documents) - {WEB_LINK}, chosen

    # `/` itself: its own script and styles, and the widget's, load under its policy.
    assert await page.evaluate("getComputedStyle(document.body).maxWidth") == "736px"  # page.css: 46rem
    widget_width = "getComputedStyle(document.querySelector('.fathom-widget')).maxWidth"
    assert await page.evaluate(widget_width) == "704px"  # widget.css: 44rem
    assert refused == []


def search_requests(page: Any) -> list[dict[str, Any]]:
    """The bodies of the widget's searches from now on, as they are sent."""
    bodies: list[dict[str, Any]] = []
    page.on(
        "request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/v1/search") else None
    )
    return bodies


async def settled(page: Any) -> None:
    """Past the debounce, with no search in flight."""
    await page.wait_for_timeout(600)
    await page.wait_for_function("!document.querySelector('.fathom-widget').hasAttribute('aria-busy')")


async def test_an_unchanged_query_sends_nothing_and_recent_answers_are_kept(page: Any, site: Site) -> None:
    box = page.get_by_role("combobox")
    await box.press_sequentially("heat transfer", delay=20)
    await wait_for_query(page, "heat transfer")
    first = await shown_ids(page)
    sent = search_requests(page)

    await box.press("End")
    await box.press_sequentially(" ", delay=20)  # a trailing space alone: the same query
    await settled(page)
    assert sent == []

    await box.press_sequentially("in", delay=300)  # slow enough for each to be searched
    await wait_for_query(page, "heat transfer in")
    assert sent and all(body["query"].startswith("heat transfer i") for body in sent)
    typed = len(sent)
    for _ in range(3):  # and deleted again, down to the query shown before
        await box.press("Backspace")
        await page.wait_for_timeout(300)
    await wait_for_query(page, "heat transfer")
    await settled(page)
    assert len(sent) == typed, sent[typed:]  # every answer came from what the widget kept
    assert await shown_ids(page) == first


async def test_an_error_replaces_the_results_in_plain_words(page: Any, site: Site) -> None:
    box = page.get_by_role("combobox")
    await box.fill("shock waves")
    await wait_for_query(page, "shock waves")
    assert await shown_ids(page)
    status = page.get_by_role("status")

    async def bad_gateway(route: Any) -> None:  # what nginx answers when no replica is up
        html = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
        await route.fulfill(status=502, content_type="text/html", body=html)

    await page.route("**/v1/search", bad_gateway)
    await box.fill("heat transfer")
    await wait_for_query(page, "heat transfer")
    assert await status.inner_text() == UNAVAILABLE
    assert await shown_ids(page) == [] and not await page.get_by_role("listbox").is_visible()
    assert await page.get_by_role("button", name="More results").is_hidden()

    await page.unroute("**/v1/search")
    await page.route("**/v1/search", lambda route: route.abort("connectionrefused"))
    await box.fill("wing flutter")
    await wait_for_query(page, "wing flutter")
    assert await status.inner_text() == UNAVAILABLE and await shown_ids(page) == []

    await page.unroute("**/v1/search")
    await box.fill("heat transfer")  # the same query again is tried again, and answers
    await wait_for_query(page, "heat transfer")
    assert await shown_ids(page) == api_ids(site, "heat transfer")


async def test_no_results_names_the_query_as_text(page: Any, site: Site) -> None:
    await page.goto(f"{site.origin}/empty")
    query = "<b>nothing</b> here"
    await page.get_by_role("combobox").fill(query)
    await wait_for_query(page, query)

    assert await page.get_by_role("status").inner_text() == f"No results for \u201c{query}\u201d"
    assert await page.locator(".fathom-widget b").count() == 0
    assert await shown_ids(page) == [] and not await page.get_by_role("listbox").is_visible()
    assert await page.locator(".fathom-widget").get_attribute("data-state") == "empty"


async def test_a_clicked_facet_keeps_focus_and_its_fields_other_values(page: Any, site: Site) -> None:
    await page.get_by_role("combobox").fill("heat transfer")
    await wait_for_query(page, "heat transfer")
    odd = "button.fathom-facet[data-field=kind][data-value=odd]"
    even = "button.fathom-facet[data-field=kind][data-value=even]"
    before = {v: await page.locator(f"button.fathom-facet[data-field=kind][data-value={v}]").inner_text()
              for v in ("odd", "even")}  # fmt: skip

    await page.locator(odd).click()
    await page.wait_for_selector(f"{odd}[aria-pressed=true]")
    await wait_for_query(page, "heat transfer")
    focused = "[document.activeElement.dataset.field, document.activeElement.dataset.value]"
    assert await page.evaluate(focused) == ["kind", "odd"]
    assert await page.locator(even).inner_text() == before["even"]  # still listed, with its count

    await page.locator(even).focus()  # and "even" chosen by keyboard: focus stays on it
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f"{even}[aria-pressed=true]")
    await wait_for_query(page, "heat transfer")
    assert await page.evaluate(focused) == ["kind", "even"]
    assert await page.locator(odd).inner_text() == before["odd"]
    # Blank values are nothing to click: none is listed.
    assert (
        await page.locator("button.fathom-facet").evaluate_all(
            "els => els.filter(e => !e.dataset.value.trim()).length"
        )
        == 0
    )


async def test_axe_finds_no_serious_violation(page: Any, site: Site) -> None:
    fathom_page = f"{site.fathom}/?" + urlencode(
        {"collection": COLLECTION, "key": site.key, "facets": "kind,year"}
    )
    for url in (site.origin, fathom_page, f"{site.origin}/empty"):
        await page.goto(url)
        box = page.get_by_role("combobox")
        assert await axe_violations(page) == [], f"{url}, before a search"
        await box.fill("heat transfer")
        await wait_for_query(page, "heat transfer")
        if url != f"{site.origin}/empty":
            await page.locator("button.fathom-facet[data-field=kind][data-value=even]").click()
            await wait_for_query(page, "heat transfer")
            await box.press("ArrowDown")  # the list open, an option active
        assert await axe_violations(page) == [], f"{url}, with results"
    await page.goto(fathom_page)
    assert await page.get_by_role("main").count() == 1  # `/` has its main landmark
    # The check can fail: a link inside an option, as the widget once had, is found.
    nested = (
        '<ul role="listbox" aria-label="x">'
        '<li role="option" aria-selected="false"><a href="/x">x</a></li></ul>'
    )
    await page.evaluate(
        "html => document.querySelector('main').insertAdjacentHTML('beforeend', html)", nested
    )
    assert "nested-interactive" in {found["id"] for found in await axe_violations(page)}
