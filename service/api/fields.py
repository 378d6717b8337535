"""Constraints shared by request bodies and path parameters, declared once: msgspec checks them as a
request is parsed, and the OpenAPI document publishes them, so the schema allows what the server takes.

A broken one is answered 400 in words a client can act on (PATTERN_PROBLEMS, read by api/errors.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import PathParameter

from service.search.collections import COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE

# At least one character that is not whitespace: "   " is as empty as "".
NOT_BLANK = r"\S"

# The `id` of a search response: a UUID in its usual text form, any case.
SEARCH_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# What a client reads when a string does not match one of these patterns.
PATTERN_PROBLEMS = {
    NOT_BLANK: "must not be empty or only whitespace",
    COLLECTION_NAME_PATTERN: f"is not a valid collection name: {COLLECTION_NAME_RULE}",
    SEARCH_ID: "is not a search's id: send the `id` of the POST /v1/search response",
}

# A cosine similarity, as a vector floor is given.
Cosine = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]


def text(description: str, max_length: int | None = None) -> msgspec.Meta:
    """A string that must hold something besides whitespace."""
    return msgspec.Meta(min_length=1, max_length=max_length, pattern=NOT_BLANK, description=description)


def collection(description: str) -> msgspec.Meta:
    return msgspec.Meta(min_length=1, pattern=COLLECTION_NAME_PATTERN, description=description)


# A collection named in the path: the same rule, for Litestar's parameter parsing and its schema.
CollectionPath = Annotated[
    str,
    PathParameter(
        # No max_length: the pattern holds the 64, and its message says the whole rule at once.
        min_length=1,
        pattern=COLLECTION_NAME_PATTERN,
        description=f"The collection's name: {COLLECTION_NAME_RULE}.",
    ),
]
