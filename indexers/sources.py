"""Readers, one per source format, each yielding Documents or the problems it met, with locations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexers.documents import Document


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A record that could not be read: where it is and what is wrong with it."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


Record = Document | SourceProblem


def beir_corpus(folder: Path) -> Path:
    corpus = folder / "corpus.jsonl" if folder.is_dir() else folder
    if not corpus.is_file():
        raise FileNotFoundError(f"{folder} has no corpus.jsonl (expected a BEIR folder or a .jsonl file)")
    return corpus


def read_jsonl(path: Path, *, id_field: str = "_id", text_field: str = "text") -> Iterator[Record]:
    """One JSON object a line: id and text fields as named, `title` if present, the rest as metadata."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _jsonl_record(line, f"{path}:{number}", id_field, text_field)


def _jsonl_record(line: str, location: str, id_field: str, text_field: str) -> Record:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        return SourceProblem(location, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(raw, dict):
        return SourceProblem(location, "expected a JSON object")
    doc_id, text = raw.get(id_field), raw.get(text_field, "")
    if not isinstance(doc_id, str | int) or str(doc_id).strip() == "":
        return SourceProblem(location, f"missing or empty id field {id_field!r}")
    if not isinstance(text, str):
        return SourceProblem(location, f"field {text_field!r} must be a string")
    return Document(str(doc_id), str(raw.get("title") or ""), text, _metadata(raw, id_field, text_field))


def _metadata(raw: dict[str, Any], id_field: str, text_field: str) -> dict[str, Any]:
    """Every other field, flattened one level from BEIR's `metadata` object, kept for filtering."""
    metadata = {k: v for k, v in raw.items() if k not in (id_field, text_field, "title", "metadata")}
    nested = raw.get("metadata")
    if isinstance(nested, dict):
        metadata.update(nested)
    return metadata
