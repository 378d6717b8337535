"""What a key may do: the Bearer header read (401), its scope and its collections checked (403).

The HTTP route guard (service/api/guard.py) and the MCP tools (service/mcp_server.py) both ask here.
"""

from __future__ import annotations

from service.auth.keys import ApiKey
from service.errors import Forbidden, Unauthorized


def bearer_token(header: str | None) -> str:
    """The key from an `Authorization: Bearer <key>` header; Unauthorized saying what is wrong."""
    if not header:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <your key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must read 'Bearer <your key>'")
    return token.strip()


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
