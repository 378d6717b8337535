"""GET /analytics (the owner's page of plots and tables, with /analytics.js and /analytics.css).

Plain files under the search page's policy (service/api/web.py): this origin's files only, no inline
script or style, calls to this origin's API only, never framed. The admin key is typed into the page
and kept in the tab's memory alone.
"""

from __future__ import annotations

from litestar import Response, get

from service.api.web import CACHE_CONTROL, FILE_POLICY, PAGE_POLICY, web_file

TYPES = {"analytics.html": "text/html", "analytics.js": "text/javascript", "analytics.css": "text/css"}


def served(name: str) -> Response[bytes]:
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "Content-Security-Policy": PAGE_POLICY if name.endswith(".html") else FILE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "same-origin",
        # The page shows what visitors searched for: not for the referrer of any link on it.
        "Referrer-Policy": "no-referrer",
    }
    return Response(web_file(name), media_type=TYPES[name], headers=headers)


@get(
    "/analytics",
    summary="Search analytics page",
    tags=["analytics"],
    include_in_schema=False,
    sync_to_thread=False,
)
def analytics_page() -> Response[bytes]:
    return served("analytics.html")


@get(
    "/analytics.js",
    summary="The analytics page's script",
    tags=["analytics"],
    include_in_schema=False,
    sync_to_thread=False,
)
def analytics_js() -> Response[bytes]:
    return served("analytics.js")


@get(
    "/analytics.css",
    summary="The analytics page's styles",
    tags=["analytics"],
    include_in_schema=False,
    sync_to_thread=False,
)
def analytics_css() -> Response[bytes]:
    return served("analytics.css")
