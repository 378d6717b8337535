"""Cursors for pages of results: an offset into the final (fused and reranked) list, bound to its search.

Stateless: the next page recomputes the same list, which is deterministic for an unchanged index
(the reranked blocks too: see SearchPipeline), and slices it further on, so pages never overlap and
a page of 20 is two pages of 10. The cursor carries a fingerprint of everything that shapes the order
(not the page size), so it cannot be replayed against another query, filter or option and silently
skip or repeat hits; and, when an earlier page had to be answered in fused order (the reranker
failed), that the walk stays in fused order, so its later pages continue that list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import TypeVar

from service.errors import InvalidRequest

T = TypeVar("T")
FINGERPRINT_CHARS = 16


def fingerprint(*parts: object) -> str:
    """A short digest of the parts' reprs: frozen dataclasses, strings and numbers repr the same each run."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:FINGERPRINT_CHARS]


FUSED = "fused"


def encode_cursor(offset: int, search: str, *, fused: bool = False) -> str:
    text = f"{offset}.{search}" + (f".{FUSED}" if fused else "")
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, search: str) -> int:
    """The offset a cursor names; InvalidRequest when it is malformed or from another search."""
    return decode_page(cursor, search)[0]


def decode_page(cursor: str, search: str) -> tuple[int, bool]:
    """(offset, whether the walk is pinned to fused order); InvalidRequest as decode_cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset_text, _, rest = text.partition(".")
        made_by, _, state = rest.partition(".")
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "cursor is not valid: send the cursor of the previous response unchanged"
        ) from None
    if made_by != search or offset < 1 or state not in ("", FUSED):
        raise InvalidRequest(
            "cursor belongs to another search: send the same query, collection, filter and options "
            "as the request that returned it (only top_k may change)"
        )
    return offset, state == FUSED


def page_of(
    hits: Sequence[T], offset: int, size: int, max_depth: int, search: str, *, fused: bool = False
) -> tuple[list[T], str | None]:
    """The page at `offset`, and the cursor of the next one (None when no hit is left within max_depth)."""
    end = min(offset + size, max_depth)
    page = list(hits[offset:end])
    more = end < len(hits) and end < max_depth
    return page, encode_cursor(end, search, fused=fused) if more else None
