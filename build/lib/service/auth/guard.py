"""The route guard for keyed endpoints: Bearer key (401), then the key's rate limit (429)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from service.api.services import services_of
from service.search.errors import Unauthorized


def bearer_token(header: str | None) -> str:
    """The key from an `Authorization: Bearer <key>` header; Unauthorized saying what is wrong."""
    if not header:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <your key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must read 'Bearer <your key>'")
    return token.strip()


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Runs before the body is read, so a bad key is a 401 even when the body is bad too."""
    services = services_of(connection)
    connection.state.api_key = None
    if not services.settings.auth.enabled:
        return
    key = services.keys.authenticate(bearer_token(connection.headers.get("authorization")))
    if key is None:
        raise Unauthorized("invalid or revoked API key; create one with `fathom keys create --name NAME`")
    services.keys.admit(key.name)
    connection.state.api_key = key
