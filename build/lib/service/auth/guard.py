"""The route guard for keyed endpoints: Bearer key (401), its rate limit (429), its scope (403).

Each route names the scope it needs in its `opt` (`opt={"scope": SEARCH}`); a route that names none
needs `admin`, so a route added without thought is closed rather than open. A key limited to some
collections reaches only those, on routes with a `{name}` path parameter here and, for a collection
named in the body, through `check_collection`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from service.api.services import services_of
from service.auth.keys import ApiKey
from service.auth.public import check_public_use
from service.auth.scopes import ADMIN
from service.search.errors import Forbidden, Unauthorized


def bearer_token(header: str | None) -> str:
    """The key from an `Authorization: Bearer <key>` header; Unauthorized saying what is wrong."""
    if not header:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <your key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must read 'Bearer <your key>'")
    return token.strip()


def needed_scope(handler: BaseRouteHandler) -> str:
    return str(handler.opt.get("scope", ADMIN))


def check_scope(key: ApiKey | None, needed: str) -> None:
    """Forbidden unless the key holds `needed` (None: auth is off, everything is allowed)."""
    if key is not None and not key.grants(needed):
        held = ", ".join(sorted(key.scopes))
        raise Forbidden(
            f"this API key (scopes: {held}) lacks the {needed!r} scope this request needs;"
            f" create a key with `fathom keys create --scope {needed}`"
        )


def check_collection(key: ApiKey | None, collection: str) -> None:
    """Forbidden when the key is limited to collections other than `collection`."""
    if key is not None and not key.reaches(collection):
        allowed = ", ".join(sorted(key.collections or ()))
        raise Forbidden(f'this API key may only use the collections {allowed}, not "{collection}"')


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Runs before the body is read, so a bad key is a 401 even when the body is bad too."""
    services = services_of(connection)
    connection.state.api_key = None
    if not services.settings.auth.enabled:
        return
    token = bearer_token(connection.headers.get("authorization"))
    # SQLite work off the event loop: another process holding the file must not stall every request.
    key = await asyncio.to_thread(services.keys.authenticate, token)
    if key is None:
        raise Unauthorized("invalid or revoked API key; create one with `fathom keys create --name NAME`")
    check_scope(key, needed_scope(handler))
    if key.origins is not None:
        check_public_use(key.origins, connection.headers.get("origin"), bool(handler.opt.get("public")))
    if "name" in connection.path_params:
        check_collection(key, str(connection.path_params["name"]))
    await asyncio.to_thread(services.keys.admit, key.name)
    connection.state.api_key = key
