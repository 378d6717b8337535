"""GET /, /widget.js and /widget.css: plain files, small, nothing loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.rerank_app import rerank_settings, running

pytestmark = pytest.mark.anyio


async def test_the_page_and_the_widget_are_served_small_and_self_contained(tmp_path: Path) -> None:
    async with running(rerank_settings(tmp_path)) as http:
        page, script, styles = [await http.get(path) for path in ("/", "/widget.js", "/widget.css")]

    assert page.headers["content-type"].startswith("text/html")
    assert '"/widget.js"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert styles.headers["content-type"].startswith("text/css")
    assert all("max-age" in r.headers["cache-control"] for r in (page, script, styles))
    assert len(script.content) + len(styles.content) < 16_000
    # No CDN: the code (comments aside) names no other host; styles come from where the script did.
    code = [line for line in script.text.splitlines() if not line.lstrip().startswith(("/*", "*", "//"))]
    assert not [line for line in code if "http:" in line or "https:" in line]
    assert "url(" not in styles.text and "@import" not in styles.text
