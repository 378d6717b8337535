"""The one rule for collection names, so a name valid anywhere is valid in every store and command."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from service.errors import InvalidRequest

# Elasticsearch index names must be lowercase; the rule also keeps Tantivy's folder inside its base path.
# Anchored, and with no newline before the end (Python's `$` would allow one), so that the pattern means
# the same in a JSON schema (the OpenAPI document) as in re.search (msgspec's check) and re.fullmatch.
COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}(?!\n)$"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
COLLECTION_NAME_RULE = "use 1 to 64 lowercase letters, digits, '_' and '-', starting with a letter or digit"


def checked_collection_name(name: str) -> str:
    """The name itself, or InvalidRequest saying what a name may hold."""
    if not COLLECTION_NAME.fullmatch(name):
        raise InvalidRequest(f"collection name {name!r} is not valid: {COLLECTION_NAME_RULE}")
    return name


def nearest_name(name: str, names: Iterable[str]) -> str | None:
    """The existing name closest to a misspelt one, if any is close enough to be the one meant."""
    matches = difflib.get_close_matches(name, [n for n in names if n != name], n=1, cutoff=0.6)
    return matches[0] if matches else None
