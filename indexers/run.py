"""One indexing run: stream a source in batches through the ingest writer, then delete what went missing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from indexers.files import SUFFIXES, document_files, read_file, read_folder
from indexers.sources import Fields, Record, SourceProblem, beir_corpus, read_csv, read_jsonl
from service.ingest.documents import Document
from service.ingest.writer import IngestReport, IngestWriter

# Documents per write. A write embeds its chunks shortest first, so the more chunks it sorts together,
# the less each ONNX batch pads: on CACM, `fathom index` took 77 s at 128 and 52 s at 512 (fp32, quiet
# machine). A write's documents are journalled together, so a crash redoes at most one batch.
DOCUMENTS_PER_BATCH = 512
FORMATS = ("auto", "beir", "jsonl", "csv", "folder")


class StrictFailure(Exception):
    """--strict and a record could not be read: the run stops before writing that batch."""


@dataclass(frozen=True, slots=True)
class Source:
    records: Iterator[Record]
    # Records expected, for the progress bar's ETA; None when counting would mean reading twice.
    total: int | None


def source_format(path: Path, chosen: str) -> str:
    if chosen != "auto":
        return chosen
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "folder"
    if path.suffix.lower() in SUFFIXES:  # one file of a folder's kinds: a folder of one
        return "folder"
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def open_source(path: Path, chosen: str, fields: Fields, follow_symlinks: bool = False) -> Source:
    """The records of a source and how many to expect; FileNotFoundError when there is no such source.

    `follow_symlinks` lets a folder's links lead out of it; a file named as the source is read
    wherever it links to, since the operator chose it.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir() and not path.is_file():
        # A pipe or a device would block the run, or act on being opened.
        raise FileNotFoundError(f"{path} is not a regular file or a folder")
    kind = source_format(path, chosen)
    if kind == "folder":
        if path.is_file():
            return Source(iter([read_file(path, path.parent, follow_symlinks=True)]), 1)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder")
        files = sum(1 for _ in document_files(path, follow_symlinks))
        return Source(read_folder(path, follow_symlinks), files)
    if kind == "csv":
        lines = count_lines(path)
        return Source(read_csv(path, fields), None if lines is None else max(0, lines - 1))
    corpus = beir_corpus(path)
    return Source(read_jsonl(corpus, fields), count_lines(corpus))


def count_lines(path: Path) -> int | None:
    """Lines in the file (a fast byte scan); CSV rows may span lines, so this is an estimate there."""
    try:
        with path.open("rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


async def index_records(
    writer: IngestWriter,
    collection: str,
    records: Iterable[Record],
    *,
    strict: bool = False,
    delete_missing: bool = False,
    batch_size: int = DOCUMENTS_PER_BATCH,
    on_progress: Callable[[int], object] = lambda _: None,
    report: IngestReport | None = None,
) -> IngestReport:
    """Finish any interrupted run first, then write the source batch by batch.

    Fills `report` as it goes (when given), so a run stopped by --strict still tells what it did.
    """
    await writer.create_collection(collection)
    report = report if report is not None else IngestReport()
    report.add(await writer.recover(collection))
    run = time.time_ns()
    for batch in batched(records, batch_size):
        problems = [str(r) for r in batch if isinstance(r, SourceProblem)]
        if problems and strict:
            report.problems.extend(problems)
            report.failed += len(problems)
            raise StrictFailure(problems[0])
        report.problems.extend(problems)
        report.failed += len(problems)
        documents = [r for r in batch if isinstance(r, Document)]
        told = 0

        def tell(done: int) -> None:
            nonlocal told
            told += done
            on_progress(done)

        report.add(await writer.upsert(collection, documents, run, progress=tell))
        # The rest of the batch: unreadable records, and documents that made no chunk or failed.
        on_progress(len(batch) - told)
    if delete_missing:
        await delete_missing_documents(writer, collection, run, report)
    return report


async def delete_missing_documents(
    writer: IngestWriter, collection: str, run: int, report: IngestReport
) -> None:
    # A record that could not be read is not missing: deleting it would lose a document silently.
    if report.failed:
        report.problems.append("--delete-missing skipped: some records could not be read or written")
        return
    report.deleted += await writer.delete_unseen(collection, run)
