"""What a key may do: scopes (search, write, admin) and, optionally, the collections it is limited to.

Modelled on Elasticsearch API keys and Qdrant's JWT keys: a key names its scopes, and a request needing
a scope the key lacks is refused with 403. `admin` holds every other scope too.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import InvalidRequest
from service.search.collections import checked_collection_name

SEARCH = "search"  # POST /v1/search and /v1/rerank
WRITE = "write"  # documents of collections: upsert, delete, read counts
ADMIN = "admin"  # create and delete collections, /metrics when protected; implies the others
SCOPES = (SEARCH, WRITE, ADMIN)

# A key created without --scope can search and rerank, nothing more: the least that is useful.
DEFAULT_SCOPES = frozenset({SEARCH})
# Keys created before scopes existed could do everything, and keep doing it (README: Keys).
LEGACY_SCOPES = frozenset(SCOPES)


def parse_scopes(names: Iterable[str]) -> frozenset[str]:
    """Scope names (each may be a comma list), or InvalidRequest naming the unknown one."""
    scopes = {part.strip() for name in names for part in name.split(",") if part.strip()}
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise InvalidRequest(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not scopes:
        raise InvalidRequest(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return frozenset(scopes)


def parse_collections(names: Iterable[str]) -> frozenset[str] | None:
    """Collection names a key is limited to (each may be a comma list); None for no limit."""
    collections = {part.strip() for name in names for part in name.split(",") if part.strip()}
    return frozenset(checked_collection_name(name) for name in collections) if collections else None


def grants(scopes: frozenset[str], needed: str) -> bool:
    return needed in scopes or ADMIN in scopes


def to_text(names: frozenset[str] | None) -> str | None:
    """As the key store keeps them: sorted, comma-separated; None stays None."""
    return None if names is None else ",".join(sorted(names))


def from_text(text: object) -> frozenset[str] | None:
    return None if text is None else frozenset(part for part in str(text).split(",") if part)
