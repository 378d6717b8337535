"""The events Fathom records about searches and clicks, and what is kept of a visitor: no IP, no agent.

A visitor is a hash of their address and user agent salted with a secret random salt that changes each
UTC day and is deleted the day after: the same visitor's searches within a day can be grouped (a typed
prefix folds into the query it became), but nobody, the operator included, can turn a hash back into
an address once the salt is gone, or follow a visitor from one day to the next.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

_SPACES = re.compile(r"\s+")
# Longest query kept: the head is what an owner reads; a pasted page would only bloat the table.
MAX_QUERY_CHARS = 200


def normalised(query: str) -> str:
    """The query as analytics group it: case folded, runs of whitespace as one space, trimmed."""
    return _SPACES.sub(" ", query).strip().casefold()[:MAX_QUERY_CHARS]


def utc_day(at: float) -> str:
    """The UTC calendar day of an epoch time, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def visitor_hash(salt: bytes, address: str, user_agent: str) -> str:
    """A visitor for one day: unlinkable to the address, or to the same visitor on another day."""
    digest = hashlib.blake2b(f"{address}\n{user_agent}".encode(), key=salt, digest_size=12)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SearchEvent:
    """One answered search. `follow`: a next page (cursor) of an earlier search, not a new question."""

    search_id: str
    at: float
    collection: str
    query: str
    key_name: str | None
    public: bool
    filters: str  # the filter's field names, sorted, comma-separated ("" for none)
    facets: str  # the facet fields asked for, comma-separated
    hits: int
    typo: bool
    prefix: bool
    follow: bool
    latency_ms: float
    degraded: bool
    visitor: str | None


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """A visitor chose a hit of a search's answer; `position` starts at 1."""

    search_id: str
    at: float
    hit_id: str
    position: int
    visitor: str | None


SEARCH_COLUMNS = (
    "search_id, at, collection, query, key_name, public, filters, facets, hits, typo, prefix, follow,"
    " latency_ms, degraded, visitor"
)
CLICK_COLUMNS = "search_id, at, hit_id, position, visitor"


def search_row(event: SearchEvent) -> tuple[object, ...]:
    return (
        event.search_id,
        event.at,
        event.collection,
        event.query,
        event.key_name,
        event.public,
        event.filters,
        event.facets,
        event.hits,
        event.typo,
        event.prefix,
        event.follow,
        event.latency_ms,
        event.degraded,
        event.visitor,
    )


def click_row(event: ClickEvent) -> tuple[object, ...]:
    return (event.search_id, event.at, event.hit_id, event.position, event.visitor)
