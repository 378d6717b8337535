"""Readers, one per source format, each yielding Documents or the problems it met, with locations.

Formats: BEIR folders and JSONL files, CSV files, and folders of .txt/.md/.html files (files.py).
Every reader streams: nothing holds more than one record of the source at a time.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.ingest.documents import Document


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A record that could not be read: where it is (file:line) and what is wrong with it."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


Record = Document | SourceProblem


@dataclass(frozen=True, slots=True)
class Fields:
    """Which fields of a record are the id, the text and the title; `keep` limits the metadata."""

    id: str = "_id"
    text: str = "text"
    title: str = "title"
    keep: frozenset[str] | None = None


def beir_corpus(folder: Path) -> Path:
    corpus = folder / "corpus.jsonl" if folder.is_dir() else folder
    if not corpus.is_file():
        raise FileNotFoundError(f"{folder} has no corpus.jsonl (expected a BEIR folder or a .jsonl file)")
    return corpus


def read_jsonl(path: Path, fields: Fields | None = None) -> Iterator[Record]:
    """One JSON object a line: id and text fields as named, the title if present, the rest as metadata."""
    fields = fields or Fields()
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield _jsonl_record(line, f"{path}:{number}", fields)
    except (OSError, UnicodeDecodeError) as exc:
        yield SourceProblem(str(path), f"cannot be read: {exc}")


def _jsonl_record(line: str, location: str, fields: Fields) -> Record:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        return SourceProblem(location, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(raw, dict):
        return SourceProblem(location, "expected a JSON object")
    return document_of(raw, location, fields)


def document_of(raw: dict[str, Any], location: str, fields: Fields) -> Record:
    """A Document from one record's fields, or the problem that prevents it."""
    doc_id, text = raw.get(fields.id), raw.get(fields.text, "")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or str(doc_id).strip() == "":
        return SourceProblem(location, f"missing or empty id field {fields.id!r}")
    if not isinstance(text, str):
        return SourceProblem(location, f"field {fields.text!r} must be a string")
    title = raw.get(fields.title) or ""
    return Document(str(doc_id), str(title), text, _metadata(raw, fields))


def _metadata(raw: dict[str, Any], fields: Fields) -> dict[str, Any]:
    """Every other field, flattened one level from BEIR's `metadata` object, kept for filtering."""
    named = (fields.id, fields.text, fields.title, "metadata")
    metadata = {k: v for k, v in raw.items() if k not in named}
    nested = raw.get("metadata")
    if isinstance(nested, dict):
        metadata.update(nested)
    if fields.keep is not None:
        metadata = {k: v for k, v in metadata.items() if k in fields.keep}
    return metadata


def read_csv(path: Path, fields: Fields | None = None) -> Iterator[Record]:
    """A header row naming the columns, then one document a row; empty cells are left out of metadata."""
    fields = fields or Fields(id="id")
    # Cells as long as a whole document: the default 128 KiB limit would refuse long texts.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            if header is None:
                return
            yield from _csv_records(rows, header, path, fields)
    except (OSError, UnicodeDecodeError) as exc:
        yield SourceProblem(str(path), f"cannot be read: {exc}")


def _csv_records(rows: Any, header: list[str], path: Path, fields: Fields) -> Iterator[Record]:
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            yield SourceProblem(f"{path}:{rows.line_num}", f"not valid CSV ({exc})")
            continue
        if not row:
            continue
        location = f"{path}:{rows.line_num}"
        if len(row) != len(header):
            yield SourceProblem(location, f"expected {len(header)} columns, found {len(row)}")
            continue
        raw = {name: cell for name, cell in zip(header, row, strict=True) if cell != ""}
        yield document_of(raw, location, fields)
