"""The route guard for keyed endpoints: Bearer key (401), its rate limit (429), its scope (403).

A public key's rate limit is counted per visitor too (service/auth/visitors.py), before the key's
own: a visitor over its share is refused without spending the allowance the other visitors share.

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

from service.api.dependencies import runtime_of
from service.auth.access import bearer_token, check_collection, check_scope
from service.auth.client_address import client_address
from service.auth.public import check_public_use
from service.auth.scopes import ADMIN
from service.errors import RateLimited, Unauthorized
from service.runtime import Runtime


def needed_scope(handler: BaseRouteHandler) -> str:
    return str(handler.opt.get("scope", ADMIN))


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Runs before the body is read, so a bad key is a 401 even when the body is bad too."""
    runtime = runtime_of(connection)
    connection.state.api_key = None
    if not runtime.settings.auth.enabled:
        return
    keys = runtime.key_store
    token = bearer_token(connection.headers.get("authorization"))
    # SQLite work off the event loop: another process holding the file must not stall every request.
    key = await asyncio.to_thread(keys.authenticate, token)
    if key is None:
        raise Unauthorized("invalid or revoked API key; create one with `fathom keys create --name NAME`")
    check_scope(key, needed_scope(handler))
    if key.origins is not None:
        check_public_use(key.origins, connection.headers.get("origin"), bool(handler.opt.get("public")))
    if "name" in connection.path_params:
        check_collection(key, str(connection.path_params["name"]))
    if key.public:
        await admit_visitor(connection, runtime, key.name)
    else:
        await asyncio.to_thread(keys.admit, key.name)
    connection.state.api_key = key


async def admit_visitor(connection: ASGIConnection[Any, Any, Any, Any], runtime: Runtime, name: str) -> None:
    """The visitor's share of a public key first, then the key's overall limit."""
    peer = connection.client.host if connection.client else None
    proxies = runtime.settings.server.proxy_networks()
    visitor = client_address(peer, connection.headers.get("x-forwarded-for"), proxies)
    runtime.visitors.admit(name, visitor)
    try:
        await asyncio.to_thread(runtime.key_store.admit, name)
    except RateLimited:
        runtime.visitors.refund(name, visitor)
        raise
