"""GET /, /widget.js and /widget.css: plain files, small, nothing loaded from elsewhere, with the
headers that keep stored document metadata from running script on the page."""

from __future__ import annotations

import asyncio
import gzip
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.integration.rerank_app import rerank_settings, running

# The page and every file it loads; widget.js and widget.css are also loaded by other sites.
FILES = ("/", "/page.js", "/page.css", "/widget.js", "/widget.css")
EMBEDDED = ("/widget.js", "/widget.css")


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: sources}."""
    parsed: dict[str, list[str]] = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *sources = directive.split()
        assert name not in parsed, f"{name} given twice in {policy!r}"
        parsed[name] = sources
    return parsed


class InlineCode(HTMLParser):
    """What in a page a policy without 'unsafe-inline' would refuse: inline script, style and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        src = dict(attrs).get("src")
        if tag == "script":
            self.scripts.append(src or "")
            if not src:
                self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{name}= on <{tag}>" for name in names if name == "style" or name.startswith("on")]


async def fetch(data_dir: Path, paths: tuple[str, ...]) -> dict[str, httpx.Response]:
    async with running(rerank_settings(data_dir)) as http:
        return {path: await http.get(path) for path in paths}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, httpx.Response]:
    """Each file's answer, and Swagger UI's, from one app started once for the module."""
    return asyncio.run(fetch(tmp_path_factory.mktemp("web"), (*FILES, "/schema/swagger")))


def test_the_page_and_the_widget_are_served_small_and_self_contained(
    served: dict[str, httpx.Response],
) -> None:
    page, page_script, script, styles = (served[p] for p in ("/", "/page.js", "/widget.js", "/widget.css"))

    assert all(served[path].status_code == 200 for path in FILES)
    # One charset: Litestar adds it to text/ types itself.
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page_script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert served["/page.css"].headers["content-type"] == "text/css; charset=utf-8"
    assert styles.headers["content-type"] == "text/css; charset=utf-8"
    assert '"/widget.js"' in page_script.text
    assert all("max-age" in served[path].headers["cache-control"] for path in FILES)
    # What a visitor downloads: small enough to add to any page (gzip is what most sites serve it with).
    widget = script.content + styles.content
    assert len(widget) < 18_000 and len(gzip.compress(widget)) < 6_500
    # No CDN: the code (comments aside) names no other host; styles come from where the script did.
    code = [line for line in script.text.splitlines() if not line.lstrip().startswith(("/*", "*", "//"))]
    assert not [line for line in code if "://" in line]  # it names the schemes it follows, no host
    assert "url(" not in styles.text and "@import" not in styles.text


def test_the_page_runs_only_its_own_files_and_may_not_be_framed(served: dict[str, httpx.Response]) -> None:
    page = served["/"]
    policy = directives(page.headers["content-security-policy"])

    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "unsafe-eval" not in page.headers["content-security-policy"]
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]  # the widget's POST /v1/search
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    # What the policy allows is what the page needs: its scripts and styles are files.
    inline = InlineCode()
    inline.feed(page.text)
    assert inline.found == []
    assert inline.scripts == ["/page.js"]
    assert '<link rel="stylesheet" href="/page.css">' in page.text
    for path in FILES:
        response = served[path]
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert directives(response.headers["content-security-policy"])["frame-ancestors"] == ["'none'"], path


def test_other_sites_may_load_the_widget_and_only_the_widget(served: dict[str, httpx.Response]) -> None:
    """A <script src> or <link rel=stylesheet> from another origin needs no CORS; a site that isolates
    itself (Cross-Origin-Embedder-Policy: require-corp) needs Cross-Origin-Resource-Policy to allow it."""

    for path in EMBEDDED:
        assert served[path].headers["cross-origin-resource-policy"] == "cross-origin", path
        # Opened on its own, the file is a document that may load and run nothing.
        assert directives(served[path].headers["content-security-policy"])["default-src"] == ["'none'"]
    for path in ("/", "/page.js", "/page.css"):
        assert served[path].headers["cross-origin-resource-policy"] == "same-origin", path


def test_swagger_ui_keeps_its_own_headers(served: dict[str, httpx.Response]) -> None:
    """The page's policy is for the page: Swagger UI runs an inline script and must keep running it."""
    docs = served["/schema/swagger"]
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    assert "content-security-policy" not in docs.headers
