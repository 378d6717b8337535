"""GET / (a search page, with /page.js and /page.css), /widget.js and /widget.css: the embeddable
widget, plain files as they are.

Every file says what a browser may do with it. The page runs only this origin's files (no inline
script or style, nothing from elsewhere), calls only this origin's API and may not be framed, so a
stored `javascript:` url that reached it still could not run. widget.js and widget.css are loaded
by other sites' pages: a <script src> or a stylesheet link needs no CORS, and
Cross-Origin-Resource-Policy: cross-origin lets sites that isolate themselves (COEP require-corp)
load them too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from litestar import Response, get

# Short enough that a new release reaches embedding sites within the hour.
CACHE_CONTROL = "public, max-age=600"
# Litestar adds "; charset=utf-8" to text/ types itself.
TYPES = {
    "index.html": "text/html",
    "page.js": "text/javascript",
    "page.css": "text/css",
    "widget.js": "text/javascript",
    "widget.css": "text/css",
}
EMBEDDED = frozenset({"widget.js", "widget.css"})
PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",  # the widget's POST /v1/search
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# A script or stylesheet opened on its own is a document too: one that may load, run and frame nothing.
FILE_POLICY = "default-src 'none'; frame-ancestors 'none'"


@cache
def web_file(name: str) -> bytes:
    """service/web/<name>, package data like service/defaults, read once."""
    return resources.files("service").joinpath("web", name).read_bytes()


def security_headers(name: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": PAGE_POLICY if name == "index.html" else FILE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "cross-origin" if name in EMBEDDED else "same-origin",
    }


def served(name: str) -> Response[bytes]:
    headers = {"Cache-Control": CACHE_CONTROL, **security_headers(name)}
    return Response(web_file(name), media_type=TYPES[name], headers=headers)


@get(
    "/",
    summary="A search page built on the widget",
    tags=["widget"],
    include_in_schema=False,
    sync_to_thread=False,
)
def search_page() -> Response[bytes]:
    return served("index.html")


@get(
    "/page.js",
    summary="The search page's script",
    tags=["widget"],
    include_in_schema=False,
    sync_to_thread=False,
)
def page_js() -> Response[bytes]:
    return served("page.js")


@get(
    "/page.css",
    summary="The search page's styles",
    tags=["widget"],
    include_in_schema=False,
    sync_to_thread=False,
)
def page_css() -> Response[bytes]:
    return served("page.css")


@get(
    "/widget.js",
    summary="The embeddable search widget",
    tags=["widget"],
    include_in_schema=False,
    sync_to_thread=False,
)
def widget_js() -> Response[bytes]:
    return served("widget.js")


@get(
    "/widget.css",
    summary="The widget's styles",
    tags=["widget"],
    include_in_schema=False,
    sync_to_thread=False,
)
def widget_css() -> Response[bytes]:
    return served("widget.css")
