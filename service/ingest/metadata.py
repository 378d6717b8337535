"""Which metadata both stores accept, checked before a document's intent is journalled.

A value a store refuses after the intent is recorded would be redone, and refused, on every later
write: so anything outside what Elasticsearch, Tantivy and Qdrant all take is refused up front, with
the field's path. Integers are 64-bit signed (Elasticsearch `long`, Tantivy i64); floats are finite;
a list holds values of one kind (Elasticsearch maps a field by its first value); keys are non-empty
and, split at dots (both stores read "a.b" as a path), have no empty part.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

from service.search.models import INT64_MAX, INT64_MIN

MAX_DEPTH = 16
MAX_METADATA_BYTES = 65_536


def metadata_problem(metadata: object) -> str | None:
    """What is wrong with a document's metadata, as "metadata.<field>: problem"; None when every
    store takes it."""
    if not isinstance(metadata, dict):
        return f"metadata: must be a JSON object, got {type(metadata).__name__}"
    problem = _value_problem(metadata, "metadata", 0)
    if problem is not None:
        return problem
    size = len(json.dumps(metadata, ensure_ascii=False, default=str).encode())
    if size > MAX_METADATA_BYTES:
        return f"metadata: {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
    return None


def _value_problem(value: Any, path: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"{path}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        return _object_problem(value, path, depth)
    if isinstance(value, list):
        return _list_problem(value, path, depth)
    problem = _scalar_problem(value)
    return None if problem is None else f"{path}: {problem}"


def _scalar_problem(value: object) -> str | None:
    if isinstance(value, str):
        return None if _is_utf8(value) else "text is not valid UTF-8 (it holds a lone surrogate)"
    if isinstance(value, bool | date) or value is None:
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"integer {value} is out of range; integers must fit in 64 bits (±9.2e18)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number"
    return f"{type(value).__name__} is not a JSON value"


def _object_problem(value: dict[Any, Any], path: str, depth: int) -> str | None:
    for key, item in value.items():
        if not isinstance(key, str) or not all(part.strip() for part in key.split(".")):
            return f"{path}: key {key!r} must be non-empty, with no empty part between dots"
        if not _is_utf8(key):
            return f"{path}: key {key!r} is not valid UTF-8 (it holds a lone surrogate)"
        problem = _value_problem(item, f"{path}.{key}", depth + 1)
        if problem is not None:
            return problem
    return None


def _is_utf8(text: str) -> bool:
    """False for text no store can hold: a lone surrogate, as Python keeps a file name's non-UTF-8 bytes."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _list_problem(value: list[Any], path: str, depth: int) -> str | None:
    kinds = {_kind(item) for item in value if item is not None}
    if len(kinds) > 1:
        return f"{path}: a list must hold values of one kind, got {', '.join(sorted(kinds))}"
    for number, item in enumerate(value):
        problem = _value_problem(item, f"{path}[{number}]", depth + 1)
        if problem is not None:
            return problem
    return None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "list" if isinstance(value, list) else "other"
