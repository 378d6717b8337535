"""The indexer's commands for the `fathom` CLI: `fathom index SOURCE` and `fathom verify`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexers.eval_cli import add_eval_command
from indexers.run import (
    DOCUMENTS_PER_BATCH,
    FORMATS,
    Source,
    StrictFailure,
    index_records,
    open_source,
    source_format,
)
from indexers.sources import Fields
from service.cli_options import collection_name
from service.errors import StoreLocked
from service.ingest.chunking import ChunkingPolicy
from service.ingest.drift import find_drift, repair
from service.ingest.writer import IngestReport
from service.runtime import open_writer
from service.settings import Settings


def field_list(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """`index`, `verify` and `eval`, each with the shared --config option (`config`)."""
    index = commands.add_parser(
        "index", help="load documents into a collection, incrementally", parents=[config]
    )
    index.add_argument("source", type=Path, help="a BEIR folder, a .jsonl or .csv file, or a folder of files")
    index.add_argument(
        "--collection", required=True, type=collection_name, help="the collection to write (made if new)"
    )
    index.add_argument("--format", choices=FORMATS, default="auto", help="default: from the path")
    index.add_argument("--id-field", help="field holding the document id (default _id; id for CSV)")
    index.add_argument("--text-field", default="text", help="field holding the text (default text)")
    index.add_argument("--title-field", default="title", help="field holding the title (default title)")
    index.add_argument(
        "--fields", type=field_list, help="comma-separated metadata fields to keep (default all)"
    )
    index.add_argument(
        "--chunk-tokens",
        type=int,
        default=256,
        help="tokens per chunk, title included (default: %(default)s)",
    )
    index.add_argument(
        "--overlap", type=int, default=32, help="tokens shared by consecutive chunks (default: %(default)s)"
    )
    index.add_argument(
        "--batch-size",
        type=int,
        default=DOCUMENTS_PER_BATCH,
        help="documents per write (default: %(default)s)",
    )
    index.add_argument("--delete-missing", action="store_true", help="delete documents not in the source")
    index.add_argument("--strict", action="store_true", help="stop at the first record that cannot be read")
    index.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="in a folder, index what links point to outside it too (default: report and skip them)",
    )
    index.set_defaults(handler=run_index)

    verify = commands.add_parser(
        "verify", help="check journal and both stores agree; --repair to fix", parents=[config]
    )
    verify.add_argument("--collection", required=True, type=collection_name, help="the collection to check")
    verify.add_argument("--repair", action="store_true", help="finish interrupted writes, remove strays")
    verify.set_defaults(handler=run_verify)
    add_eval_command(commands, config)


def locked_message(exc: StoreLocked) -> str:
    return (
        f"error: {exc}\nerror: is `fathom serve` running on this data_dir? Stop it, or push documents "
        "to it over HTTP (POST /v1/collections/{name}/documents)."
    )


def run_index(args: argparse.Namespace, settings: Settings) -> int:
    kind = source_format(args.source, args.format)
    fields = Fields(
        args.id_field or ("id" if kind == "csv" else "_id"), args.text_field, args.title_field, args.fields
    )
    try:
        policy = ChunkingPolicy(args.chunk_tokens, args.overlap)
        source = open_source(args.source, args.format, fields, args.follow_symlinks)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = IngestReport()
    try:
        asyncio.run(index_source(settings, args, policy, source, report))
    except StoreLocked as exc:
        print(locked_message(exc), file=sys.stderr)
        return 1
    except StrictFailure as exc:
        print(f"error: --strict: {exc}", file=sys.stderr)
        print(report.summary())
        return 1
    for problem in report.problems:
        print(f"failed {problem}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


async def index_source(
    settings: Settings,
    args: argparse.Namespace,
    policy: ChunkingPolicy,
    source: Source,
    report: IngestReport,
) -> None:
    async with open_writer(settings, policy) as writer:
        with tqdm(total=source.total, desc=f"indexing {args.collection}", unit="doc", file=sys.stderr) as bar:
            await index_records(
                writer,
                args.collection,
                source.records,
                strict=args.strict,
                delete_missing=args.delete_missing,
                batch_size=args.batch_size,
                on_progress=bar.update,
                report=report,
            )


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        clean = asyncio.run(verify(settings, args.collection, args.repair))
    except StoreLocked as exc:
        print(locked_message(exc), file=sys.stderr)
        return 1
    return 0 if clean else 1


async def verify(settings: Settings, collection: str, fix: bool) -> bool:
    async with open_writer(settings) as writer:
        if not fix:
            drift = await find_drift(writer, collection)
            print("\n".join(drift.lines()))
            return drift.clean
        before = await find_drift(writer, collection)
        print("\n".join(["before repair:", *before.lines()]))
        report, after = await repair(writer, collection)
        print(
            f"repair: redid {report.recovered} unfinished changes, removed {report.parked} failed changes"
            f" and {report.deleted} stray documents"
        )
        print("\n".join(["after repair:", *after.lines()]))
        if not after.clean:
            print("documents still differing are rewritten by the next `fathom index` of their source")
        return after.clean
