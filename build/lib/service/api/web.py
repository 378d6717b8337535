"""GET / (a search page), /widget.js and /widget.css: the embeddable widget, plain files as they are."""

from __future__ import annotations

from functools import cache
from importlib import resources

from litestar import Response, get

# Short enough that a new release reaches embedding sites within the hour.
CACHE_CONTROL = "public, max-age=600"
TYPES = {
    "index.html": "text/html; charset=utf-8",
    "widget.js": "text/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
}


@cache
def web_file(name: str) -> bytes:
    """service/web/<name>, package data like service/defaults, read once."""
    return resources.files("service").joinpath("web", name).read_bytes()


def served(name: str) -> Response[bytes]:
    return Response(web_file(name), media_type=TYPES[name], headers={"Cache-Control": CACHE_CONTROL})


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
