"""The values that flow through search: passages in the stores, filters, hits with their evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# Metadata values the stores can filter on; dates travel as ISO strings.
Scalar = str | int | float | bool
# The integers every store holds: Elasticsearch's `long`, Tantivy's i64, Qdrant's integer.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """One indexed passage of a document: the unit both stores hold.

    `id` is deterministic (document id and position), so re-indexing the same text overwrites
    instead of duplicating. `start` and `end` are the chunk's character offsets in its document's
    text (`text == document.text[start:end]`); None for chunks indexed before offsets were kept.
    """

    id: str
    doc_id: str
    position: int
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class Equals:
    field: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class AnyOf:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds on a number or an ISO date; unset bounds are open."""

    field: str
    gte: float | datetime | date | None = None
    gt: float | datetime | date | None = None
    lte: float | datetime | date | None = None
    lt: float | datetime | date | None = None


Condition = Equals | AnyOf | Range


@dataclass(frozen=True, slots=True)
class Filter:
    """Conditions that all must hold (AND)."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Hit:
    """One passage a retriever found, best first in its list; `score` is the retriever's own."""

    chunk_id: str
    doc_id: str
    score: float
    title: str = ""
    text: str = ""
    snippet: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
