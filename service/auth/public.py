"""Public keys: search keys a web page may hold, usable only from the origins they name.

Anyone can read a key out of a page, so a public key can do little: search (POST /v1/search, not
rerank or embeddings) on the collections it names, from a browser on one of its origins, within a
rate limit it always has. The origin check stops other sites from spending the key in their
visitors' browsers; a script outside a browser can send any Origin, which is why the key can do so
little and is always rate-limited.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from service.errors import Forbidden, InvalidRequest
from service.settings import SearchRerankSettings

# Requests per minute a public key gets when it is created without --rate-limit.
PUBLIC_RATE_LIMIT = 600


def parse_origin(text: str) -> str:
    """An origin as browsers send it (`https://example.org`, `http://127.0.0.1:8080`), or InvalidRequest."""
    parts = urlsplit(text.strip())
    try:
        valid_port = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        valid_port = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port:
        raise InvalidRequest(f"origin {text!r} is not valid: write it as https://example.org[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidRequest(f"origin {text!r} must be only scheme, host and port, like https://example.org")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def parse_origins(texts: Iterable[str]) -> frozenset[str]:
    return frozenset(parse_origin(text) for text in texts)


def check_public_use(origins: frozenset[str], origin: str | None, public_route: bool) -> None:
    """Forbidden unless a public key is searching, from one of its origins."""
    if not public_route:
        raise Forbidden(
            "a public key can only search (POST /v1/search); keep a secret key on your server for the rest"
        )
    if origin not in origins:
        came_from = (
            f"came from {origin}" if origin else "sent no Origin header (it did not come from a browser)"
        )
        raise Forbidden(
            f"this public key may be used only from {', '.join(sorted(origins))}; this request {came_from}"
        )


def check_public_rerank(depth: int | None, budget_ms: float | None, defaults: SearchRerankSettings) -> None:
    """Forbidden when a public key asks for more rerank work than the server does by default.

    Rerank is the costly stage, and anyone can copy the key from the page: a deeper head or a longer
    budget is the operator's to grant with a secret key. Asking for less (a shallower head, a shorter
    budget) is allowed. A budget of 0 means none (the whole head is reranked, however long it takes),
    so it is refused unless the server's own default is no budget either.
    """
    if depth is not None and depth > defaults.depth:
        raise Forbidden(
            f"rerank.depth {depth} is over this server's default of {defaults.depth}, the most a public key"
            f" may ask for; send rerank.depth 0 to {defaults.depth}, or leave it out"
        )
    if budget_ms is None or defaults.budget_ms == 0:
        return
    if budget_ms == 0 or budget_ms > defaults.budget_ms:
        asked = "0 (no budget)" if budget_ms == 0 else f"{budget_ms:g}"
        raise Forbidden(
            f"rerank.budget_ms {asked} is over this server's default of {defaults.budget_ms:g} ms, the most a"
            f" public key may ask for; send rerank.budget_ms above 0 and at most {defaults.budget_ms:g},"
            " or leave it out"
        )
