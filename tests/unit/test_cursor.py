"""Cursors and pages: pure slicing of the final list, bound to the search that made it."""

from __future__ import annotations

import pytest

from service.errors import InvalidRequest
from service.search.cursor import decode_cursor, encode_cursor, fingerprint, page_of

HITS = [f"d{i}" for i in range(25)]
SEARCH = fingerprint("boundary layer", "cran", None)


def test_two_pages_of_ten_are_one_page_of_twenty() -> None:
    first, cursor = page_of(HITS, 0, 10, 200, SEARCH)
    assert cursor is not None
    second, _ = page_of(HITS, decode_cursor(cursor, SEARCH), 10, 200, SEARCH)
    twenty, _ = page_of(HITS, 0, 20, 200, SEARCH)

    assert first + second == twenty == HITS[:20]


def test_last_page_has_no_cursor() -> None:
    _, cursor = page_of(HITS, 0, 20, 200, SEARCH)
    assert cursor is not None
    page, after = page_of(HITS, decode_cursor(cursor, SEARCH), 20, 200, SEARCH)

    assert page == HITS[20:] and after is None


def test_pages_stop_at_max_depth() -> None:
    page, cursor = page_of(HITS, 10, 10, 15, SEARCH)

    assert page == HITS[10:15] and cursor is None


def test_a_cursor_from_another_search_is_refused() -> None:
    cursor = encode_cursor(10, SEARCH)

    with pytest.raises(InvalidRequest, match="another search"):
        decode_cursor(cursor, fingerprint("boundary layer", "cran", "a filter"))


@pytest.mark.parametrize("cursor", ["", "not base64 at all!", encode_cursor(0, SEARCH), "bm90LWEtbnVtYmVy"])
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor"):
        decode_cursor(cursor, SEARCH)


def test_fingerprint_is_stable_and_sensitive() -> None:
    assert fingerprint("q", 1, (1.0, 1.0)) == fingerprint("q", 1, (1.0, 1.0))
    assert fingerprint("q", 1, (1.0, 1.0)) != fingerprint("q", 1, (1.0, 0.5))
