"""Public keys: origins as browsers send them, what a public key may be, and where it may be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.auth.keys import KeyStore
from service.auth.public import PUBLIC_RATE_LIMIT, check_public_use, parse_origin
from service.errors import Forbidden, InvalidRequest

SITE = frozenset({"https://docs.example.org"})


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("https://docs.example.org", "https://docs.example.org"),
        ("https://Docs.Example.org/", "https://docs.example.org"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_origins_are_written_as_browsers_send_them(text: str, origin: str) -> None:
    assert parse_origin(text) == origin


@pytest.mark.parametrize(
    "text", ["docs.example.org", "ftp://example.org", "https://example.org/search", "https://x:99999", "*"]
)
def test_other_origins_are_refused_saying_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidRequest, match=r"https://example\.org"):
        parse_origin(text)


def test_a_public_key_searches_its_collections_with_a_rate_limit(tmp_path: Path) -> None:
    store = KeyStore.in_data_dir(tmp_path)
    raw = store.create("site", collections=frozenset({"docs"}), origins=SITE)
    key = store.authenticate(raw)
    store.close()

    assert key is not None and key.public and key.origins == SITE
    assert key.scopes == {"search"} and key.collections == {"docs"}
    assert key.rate_limit == PUBLIC_RATE_LIMIT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"collections": None}, "must name the collections"),
        ({"scopes": frozenset({"search", "write"})}, "only have the search scope"),
        ({"origins": frozenset()}, "at least one origin"),
    ],
)
def test_a_public_key_can_be_nothing_more(tmp_path: Path, options: dict[str, object], message: str) -> None:
    store = KeyStore.in_data_dir(tmp_path)
    arguments: dict[str, object] = {"collections": frozenset({"docs"}), "origins": SITE, **options}
    with pytest.raises(InvalidRequest, match=message):
        store.create("site", **arguments)  # type: ignore[arg-type]
    store.close()


def test_cors_origins_are_those_of_active_public_keys(tmp_path: Path) -> None:
    store = KeyStore.in_data_dir(tmp_path)
    store.create("secret")
    store.create("a", collections=frozenset({"docs"}), origins=SITE)
    store.create("b", collections=frozenset({"docs"}), origins=frozenset({"http://localhost:3000"}))
    store.revoke("b")

    assert store.public_origins() == SITE
    store.close()


def test_a_public_key_is_used_only_to_search_from_its_origins() -> None:
    check_public_use(SITE, "https://docs.example.org", public_route=True)
    with pytest.raises(Forbidden, match="only search"):
        check_public_use(SITE, "https://docs.example.org", public_route=False)
    with pytest.raises(Forbidden, match=r"came from https://evil\.example"):
        check_public_use(SITE, "https://evil.example", public_route=True)
    with pytest.raises(Forbidden, match="no Origin header"):
        check_public_use(SITE, None, public_route=True)
