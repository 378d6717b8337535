"""Facet counts: how many documents the query matches lexically, and how many per metadata value.

Counts are of documents, not chunks, over every document the BM25 query matches after the filter,
so a facet value's count is the `total` of the same search filtered on that value. Values are the
metadata's strings, numbers and booleans; each field lists its FACET_VALUES most frequent values,
most frequent first, ties by value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.errors import InvalidRequest
from service.search.filters import FIELD_NAME, FIELD_NAME_RULE
from service.search.models import Scalar

FACET_VALUES = 20
MAX_FACET_FIELDS = 10


@dataclass(frozen=True, slots=True)
class FacetValue:
    value: Scalar
    count: int


@dataclass(frozen=True, slots=True)
class FacetCounts:
    """Documents matched (`total`) and, per requested field, its top values with document counts."""

    total: int
    fields: dict[str, list[FacetValue]] = field(default_factory=dict)


def parse_facet_fields(raw: Sequence[object] | None) -> tuple[str, ...] | None:
    """The requested facet fields, validated like filter fields; None when facets were not asked for."""
    if raw is None:
        return None
    if len(raw) > MAX_FACET_FIELDS:
        raise InvalidRequest(f"facets takes at most {MAX_FACET_FIELDS} fields, got {len(raw)}")
    for name in raw:
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            raise InvalidRequest(f"facets: field {name!r} is not valid: {FIELD_NAME_RULE}")
    return tuple(dict.fromkeys(str(name) for name in raw))


def top_values(counts: Mapping[Scalar, int]) -> list[FacetValue]:
    """The FACET_VALUES most frequent values; equal counts by value (as text, so types can mix)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return [FacetValue(value, count) for value, count in ranked[:FACET_VALUES]]


def metadata_values(metadata: Mapping[str, Any], name: str) -> list[Scalar]:
    """The scalar values a metadata field holds: a dotted name is a path unless a key has the dots."""
    value: Any = metadata.get(name)
    if value is None and "." in name:
        value = metadata
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str | int | float | bool)]


def count_documents(passages: Iterable[tuple[str, Mapping[str, Any]]], names: Sequence[str]) -> FacetCounts:
    """Facet counts from matching passages as (doc_id, metadata); a document counts once per value."""
    documents: dict[str, Mapping[str, Any]] = {}
    for doc_id, metadata in passages:
        documents.setdefault(doc_id, metadata)  # chunks of one document carry the same metadata
    fields: dict[str, list[FacetValue]] = {}
    for name in names:
        counts: dict[Scalar, int] = defaultdict(int)
        for metadata in documents.values():
            # dict.fromkeys: a document listing a value twice still counts once for it
            for value in dict.fromkeys(metadata_values(metadata, name)):
                counts[value] += 1
        fields[name] = top_values(counts)
    return FacetCounts(total=len(documents), fields=fields)
