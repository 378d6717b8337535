"""The indexer's commands for the `fathom` CLI: `fathom index SOURCE --collection NAME`."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexers.chunking import Chunker, ChunkingPolicy
from indexers.run import IndexReport, index_records
from indexers.sources import beir_corpus, read_jsonl
from service.backends.stack import open_stack
from service.settings import Settings

COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def collection_name(text: str) -> str:
    if not COLLECTION_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a collection name: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return text


def add_commands(commands: Any) -> None:
    index = commands.add_parser("index", help="load a document collection into both stores")
    index.add_argument("source", type=Path, help="a BEIR folder (corpus.jsonl) or a .jsonl file")
    index.add_argument("--collection", required=True, type=collection_name)
    index.add_argument("--id-field", default="_id", help="JSON field holding the document id (default _id)")
    index.add_argument("--text-field", default="text", help="JSON field holding the text (default text)")
    index.add_argument("--chunk-tokens", type=int, default=256, help="tokens per chunk, title included")
    index.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive chunks")
    index.add_argument("--config", help=argparse.SUPPRESS, dest="sub_config")
    index.set_defaults(handler=run_index)


def run_index(args: argparse.Namespace, settings: Settings) -> int:
    try:
        corpus = beir_corpus(args.source)
        policy = ChunkingPolicy(args.chunk_tokens, args.overlap)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(index_corpus(settings, corpus, args, policy))
    for problem in report.problems:
        print(f"skipped {problem}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


async def index_corpus(
    settings: Settings, corpus: Path, args: argparse.Namespace, policy: ChunkingPolicy
) -> IndexReport:
    records = read_jsonl(corpus, id_field=args.id_field, text_field=args.text_field)
    async with open_stack(settings) as stack:
        chunker = Chunker(stack.embedder.tokenizer, policy)
        with tqdm(desc=f"indexing {args.collection}", unit="doc", file=sys.stderr) as bar:
            return await index_records(stack, args.collection, records, chunker, bar.update)
