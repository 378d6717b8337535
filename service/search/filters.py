"""Metadata filters as clients write them, parsed into the Filter model both stores apply.

Syntax, one entry per metadata field, all entries must hold (AND):

    {"lang": "en"}                                   equality (string, number or boolean)
    {"lang": {"in": ["en", "de"]}}                   any of a non-empty list
    {"year": {"gte": 1990, "lt": 2000}}              range on numbers
    {"published": {"gte": "2024-01-01T08:00:00Z"}}   range on ISO dates or date-times
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from service.errors import InvalidRequest
from service.search.models import INT64_MAX, INT64_MIN, AnyOf, Condition, Equals, Filter, Range, Scalar

# Dot-separated paths into the metadata object; the characters both stores accept in a field path.
# Anchored, and `(?!\n)` so Python's `$` refuses a trailing newline as JSON Schema's does: the OpenAPI
# document publishes this pattern for facet fields (service/api/fields.py).
FIELD_NAME_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(?!\n)$"
FIELD_NAME = re.compile(FIELD_NAME_PATTERN)
FIELD_NAME_RULE = "use letters, digits, '_' and '-', with '.' between the parts of a nested field"
# What Elasticsearch's dynamic date detection (strict_date_optional_time) also recognises, so a
# metadata value is a date in both stores or in neither.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?",
)
RANGE_BOUNDS = ("gte", "gt", "lte", "lt")
MAX_ANY_OF = 1024

Bound = float | datetime | date


def parse_iso_date(text: str) -> date | datetime | None:
    """The date or date-time an ISO 8601 string names, or None when it names neither."""
    try:
        if ISO_DATE.fullmatch(text):
            return date.fromisoformat(text)
        if ISO_DATETIME.fullmatch(text):
            return datetime.fromisoformat(text)
    except ValueError:  # the shape fits but the calendar does not, e.g. 2024-02-30
        return None
    return None


def parse_filter(raw: object) -> Filter | None:
    """The Filter a request's `filter` object describes; None when there is nothing to filter on."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidRequest('filter must be an object of field: condition, e.g. {"lang": "en"}')
    conditions = tuple(parse_condition(field, spec) for field, spec in raw.items())
    return Filter(conditions=conditions) if conditions else None


def parse_condition(field: object, spec: object) -> Condition:
    name = parse_field_name(field)
    if isinstance(spec, Mapping):
        return parse_operators(name, spec)
    if isinstance(spec, list):
        raise InvalidRequest(f'filter "{name}": to match any of several values write {{"in": [...]}}')
    return Equals(field=name, value=parse_scalar(name, spec))


def parse_field_name(field: object) -> str:
    if not isinstance(field, str) or not FIELD_NAME.fullmatch(field):
        raise InvalidRequest(f"filter field {field!r} is not valid: {FIELD_NAME_RULE}")
    return field


def parse_scalar(name: str, value: object) -> Scalar:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return in_range(name, value)
    raise InvalidRequest(
        f'filter "{name}": values must be strings, finite numbers or booleans, not {value!r}'
    )


def in_range(name: str, number: int | float) -> int | float:
    """The number, if the stores can compare with it: Tantivy refuses an integer past 64 bits (the
    lexical stage failed) and reads a range bound past them as text, matching the wrong documents.
    No stored integer lies outside, and stored floats that do are too rare to be worth wrong answers."""
    if INT64_MIN <= number <= INT64_MAX:
        return number
    raise InvalidRequest(
        f'filter "{name}": {number!r} is out of range; numbers must lie between {INT64_MIN} and'
        f" {INT64_MAX} (64-bit integers)"
    )


def parse_operators(name: str, spec: Mapping[Any, Any]) -> Condition:
    operators = set(spec)
    if operators == {"in"}:
        return parse_any_of(name, spec["in"])
    if operators and operators <= set(RANGE_BOUNDS):
        return parse_range(name, spec)
    raise InvalidRequest(
        f'filter "{name}": write either {{"in": [...]}} or range bounds among gte, gt, lte, lt; '
        f"got {sorted(map(str, operators))}"
    )


def parse_any_of(name: str, values: object) -> AnyOf:
    if not isinstance(values, list) or not values:
        raise InvalidRequest(f'filter "{name}": "in" needs a non-empty list of values')
    if len(values) > MAX_ANY_OF:
        raise InvalidRequest(f'filter "{name}": "in" takes at most {MAX_ANY_OF} values, got {len(values)}')
    return AnyOf(field=name, values=tuple(parse_scalar(name, value) for value in values))


def parse_range(name: str, spec: Mapping[str, object]) -> Range:
    if "gt" in spec and "gte" in spec:
        raise InvalidRequest(f'filter "{name}": give one lower bound, "gt" or "gte", not both')
    if "lt" in spec and "lte" in spec:
        raise InvalidRequest(f'filter "{name}": give one upper bound, "lt" or "lte", not both')
    bounds = {op: parse_bound(name, op, value) for op, value in spec.items()}
    # Comparing a number with a date has no meaning in either store.
    if len({isinstance(bound, date) for bound in bounds.values()}) > 1:
        raise InvalidRequest(f'filter "{name}": range bounds must be all numbers or all dates')
    return Range(
        field=name, gte=bounds.get("gte"), gt=bounds.get("gt"), lte=bounds.get("lte"), lt=bounds.get("lt")
    )


def parse_bound(name: str, op: str, value: object) -> Bound:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(in_range(name, value))
    if isinstance(value, str) and (moment := parse_iso_date(value)) is not None:
        return moment
    raise InvalidRequest(
        f'filter "{name}": "{op}" must be a finite number or an ISO date such as "2024-01-31" '
        f'or "2024-01-31T12:00:00Z", not {value!r}'
    )
