"""Facet counts: how many documents the query matches lexically, and how many per metadata value.

Counts are of documents, not chunks, over every document the BM25 query matches after the filter,
so a facet value's count is the `total` of the same search filtered on that value. Values are the
metadata's strings, numbers and booleans; each field lists its FACET_VALUES most frequent values,
most frequent first, ties by value.

Facets are disjunctive, as Algolia's: a field the filter names is counted without its own condition
(the rest of the filter still applies), so once a visitor picks a value the field's other values stay
listed with the counts they would have if picked instead. `total` counts with the whole filter.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.errors import InvalidRequest
from service.search.filters import FIELD_NAME, FIELD_NAME_RULE
from service.search.models import Filter, Scalar

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


# Counts `fields` for the query under a filter: one backend's single counting pass.
CountPass = Callable[[Sequence[str], Filter | None], Awaitable[FacetCounts]]


def without_field(filter: Filter, name: str) -> Filter | None:
    """The filter minus its conditions on `name`; None when nothing is left."""
    kept = tuple(condition for condition in filter.conditions if condition.field != name)
    return Filter(kept) if kept else None


async def disjunctive_counts(count: CountPass, fields: Sequence[str], filter: Filter | None) -> FacetCounts:
    """`total` and the fields the filter does not name in one pass with the whole filter, and each
    field it names in a pass of its own without its condition; the passes run concurrently."""
    filtered = {condition.field for condition in filter.conditions} if filter else set()
    own = [name for name in fields if name in filtered]
    if filter is None or not own:
        return await count(fields, filter)
    rest = [name for name in fields if name not in filtered]
    passes = [count(rest, filter), *(count([name], without_field(filter, name)) for name in own)]
    whole, *each = await asyncio.gather(*passes)
    counted = {**whole.fields, **{name: found.fields[name] for name, found in zip(own, each, strict=True)}}
    return FacetCounts(total=whole.total, fields={name: counted[name] for name in fields})
