"""CORS for public keys: browsers on an origin that an active public key names may call POST /v1/search.

No other origin gets CORS headers, and no other route answers a browser on another origin: secret keys
stay on servers. Which key may be used from which origin is the route guard's to check (a public
key from an origin it does not name is a 403); this middleware answers the browser's side of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from service.api.errors import error_body

PUBLIC_PATHS = frozenset({"/v1/search", "/v1/events"})
# Browsers may cache a preflight this long: a revoked key's origin is refused within ten minutes.
PREFLIGHT_MAX_AGE = "600"

Origins = Callable[[], Awaitable[frozenset[str]]]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def allow(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


async def preflight(send: Send, origin: str, permitted: bool) -> None:
    """The answer to OPTIONS before a cross-origin POST: allowed, or a 403 that says what to do."""
    if permitted:
        headers = [
            *allow(origin),
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
        ]
        await respond(send, 204, headers)
        return
    body = error_body(
        f"origin {origin} may not call this API from a browser: create a public key for it with "
        f"`fathom keys create --public --origin {origin} ...`",
        "permission_error",
        "origin_not_allowed",
    )
    headers = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
    await respond(send, 403, headers, msgspec.json.encode(body))


def cors_middleware(allowed_origins: Origins) -> Callable[[ASGIApp], ASGIApp]:
    """Answers preflights and adds Access-Control-Allow-Origin for the origins public keys name."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            origin = header(scope, b"origin")
            if scope["type"] != ScopeType.HTTP or origin is None or scope["path"] not in PUBLIC_PATHS:
                await app(scope, receive, send)
                return
            permitted = origin in await allowed_origins()
            if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
                await preflight(send, origin, permitted)
                return

            async def send_with_cors(message: Message) -> None:
                if message["type"] == "http.response.start" and permitted:
                    message = {**message, "headers": [*message.get("headers", []), *allow(origin)]}
                await send(message)

            await app(scope, receive, send_with_cors)

        return wrapped

    return middleware
