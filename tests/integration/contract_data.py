"""Cranfield passages with metadata of every filterable kind, for the store contract tests."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from service.search.models import Chunk
from tests.conftest import DATA

CORPUS = DATA / "cranfield" / "corpus.jsonl"


def synthetic_metadata(i: int, doc: dict[str, Any]) -> dict[str, Any]:
    """Filterable fields of every kind, spread so each filter keeps some documents and drops others."""
    return {
        "key": doc["_id"],
        "author": (doc.get("metadata") or {}).get("author", ""),
        "parity": "even" if i % 2 == 0 else "odd",
        "tag": "abc"[i % 3],
        "group": i % 4,
        "reviewed": i % 5 == 0,
        # Whole and fractional values in one field: Tantivy stores them as two number types.
        "pages": i * 1.5,
        "published": f"{1950 + i % 10}-{1 + i % 12:02d}-15",
        "updated": f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:30:00+02:00",
    }


def cranfield_chunks(limit: int, *, skip_empty: bool = False) -> list[Chunk]:
    """The first `limit` Cranfield documents as one chunk each (`<id>:0`)."""
    with CORPUS.open(encoding="utf-8") as handle:
        docs = (json.loads(line) for line in handle)
        chosen = islice((doc for doc in docs if doc["text"].strip() or not skip_empty), limit)
        return [
            Chunk(
                id=f"{doc['_id']}:0",
                doc_id=doc["_id"],
                position=0,
                title=doc["title"],
                text=doc["text"],
                metadata=synthetic_metadata(i, doc),
            )
            for i, doc in enumerate(chosen)
        ]


FILLER = "alpha beta gamma delta epsilon"
SPLIT_TEXT = f"zeppelin {FILLER} hangar {FILLER}"
CUT = len(f"zeppelin {FILLER} ")


def split_document(doc_id: str = "split") -> list[Chunk]:
    """One document as two overlapping windows: `zeppelin` only in the first, `hangar` only in the second."""
    return [
        Chunk(id=f"{doc_id}#0", doc_id=doc_id, position=0, title="", text=SPLIT_TEXT[:CUT], start=0, end=CUT),
        Chunk(
            id=f"{doc_id}#1",
            doc_id=doc_id,
            position=1,
            title="",
            text=SPLIT_TEXT[CUT - 6 :],
            start=CUT - 6,
            end=len(SPLIT_TEXT),
        ),
    ]
