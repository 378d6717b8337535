"""`fathom eval BEIR_FOLDER --collection NAME`: retrieval quality and latency of each search stage.

Every judged query runs through the real SearchPipeline, in process, on the configured stores. Each
stage asks both retrievers for 100 candidates and keeps the first 100 hits: Recall@100 reads all of
them, nDCG@10 and MRR@10 the first 10. Latency is the wall time of one `pipeline.search`; the query
embedding cache is off, so every stage pays for its own embeddings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
from tqdm import tqdm

from indexers.eval_report import DEPTH, StageResult, deltas, stage_result, table
from indexers.evaluation import Qrels, judged_queries, load_qrels, load_queries
from indexers.reference import reference_runs
from indexers.sources import beir_corpus, read_jsonl
from service.cli_options import collection_name, non_negative_int
from service.errors import InvalidRequest, NotFound, StoreLocked
from service.ingest.documents import Document
from service.runtime import open_runtime
from service.search.pipeline import SearchPipeline, SearchQuery
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Stage:
    weights: tuple[float, float]
    rerank: bool = False


STAGES = {
    "bm25": Stage((1.0, 0.0)),
    "dense": Stage((0.0, 1.0)),
    "hybrid": Stage((1.0, 1.0)),
    "rerank": Stage((1.0, 1.0), rerank=True),
}
REFERENCE_STAGES = ("ref-bm25", "ref-dense", "ref-hybrid")


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A BEIR folder read for evaluation: the judged queries to run (in file order) and their qrels."""

    queries: dict[str, str]
    qrels: Qrels
    folder: Path


@dataclass(frozen=True, slots=True)
class Report:
    collection: str
    queries: int  # judged queries, each counted in every mean
    rerank_model: str | None
    rerank_depth: int | None
    stages: list[StageResult]


def read_benchmark(folder: Path, qrels_name: str = "test", max_queries: int | None = None) -> Benchmark:
    """FileNotFoundError naming what is missing; a judged query absent from queries.jsonl scores 0."""
    for needed in (folder / "queries.jsonl", folder / "qrels" / f"{qrels_name}.tsv"):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist: {folder} is not a BEIR folder")
    texts = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / f"{qrels_name}.tsv")
    judged = judged_queries(qrels)
    wanted = set(judged)
    ordered = [q for q in texts if q in wanted] + [q for q in judged if q not in texts]
    kept = ordered[:max_queries] if max_queries is not None else ordered
    # A query without text gets no ranking: it stays in the qrels and scores 0.
    runnable = {q: texts[q] for q in kept if texts.get(q, "").strip()}
    return Benchmark(queries=runnable, qrels={q: qrels[q] for q in kept}, folder=folder)


def read_documents(folder: Path) -> list[Document]:
    """The BEIR folder's corpus, for the reference stages; ValueError at the first unreadable record."""
    documents = []
    for record in read_jsonl(beir_corpus(folder)):
        if not isinstance(record, Document):
            raise ValueError(f"the reference needs the whole corpus: {record}")
        documents.append(record)
    return documents


def eval_settings(settings: Settings, rerank_model: str | None = None) -> Settings:
    """The configured settings, with room for 100 hits and without the query-vector cache.

    With `rerank_model`, that one model is the only one loaded, in process (never a remote reranker);
    InvalidRequest if it is not configured.
    """
    rerank = settings.rerank
    if rerank_model is not None:
        configured = rerank.enabled_models()
        if rerank_model not in configured:
            available = ", ".join(sorted(configured)) or "none"
            raise InvalidRequest(f"rerank model {rerank_model!r} is not configured; configured: {available}")
        rerank = msgspec.structs.replace(
            rerank, default_model=rerank_model, models={rerank_model: configured[rerank_model]}
        )
    search = msgspec.structs.replace(
        settings.search,
        max_top_k=max(settings.search.max_top_k, DEPTH),
        max_candidates=max(settings.search.max_candidates, DEPTH),
        rerank=msgspec.structs.replace(settings.search.rerank, url="", model=rerank_model or ""),
    )
    embedding = msgspec.structs.replace(settings.embedding, query_cache_size=0)
    return msgspec.structs.replace(settings, search=search, embedding=embedding, rerank=rerank)


async def evaluate(
    settings: Settings,
    collection: str,
    benchmark: Benchmark,
    *,
    stages: Sequence[str] = tuple(STAGES),
    rerank_model: str | None = None,
    rerank_depth: int | None = None,
    progress: bool = False,
    reference: bool = False,
) -> Report:
    """Run every query of the benchmark through each stage; NotFound when the collection is missing.

    With `reference`, the textbook hybrid of indexers/reference.py (on the folder's corpus and the
    configured embedding model) is ranked in the same run and reported as stages ref-bm25, ref-dense
    and ref-hybrid.
    """
    reranks = any(STAGES[name].rerank for name in stages)
    model = rerank_model or settings.search.rerank.model or settings.rerank.default_model
    depth = settings.search.rerank.depth if rerank_depth is None else rerank_depth
    settings = eval_settings(settings, model if reranks else None)
    results = []
    async with open_runtime(settings, keys=False, models=reranks) as runtime:
        # Opened in the foreground: open, or it raised.
        stack, pipeline = runtime.search.stack, runtime.search.pipeline
        if not await stack.lexical.collection_exists(collection):
            raise NotFound(f'collection "{collection}" does not exist')
        if reranks:
            await runtime.registry.wait_loaded()
            await runtime.registry.engine(model)  # raises when the model failed to load
        for name in stages:
            stage = STAGES[name]
            results.append(
                await run_stage(pipeline, collection, benchmark, name, stage, depth=depth, progress=progress)
            )
        if reference:
            runs = await reference_runs(read_documents(benchmark.folder), benchmark.queries, stack.embedder)
            for name, (rankings, latencies) in runs.stages().items():
                results.append(stage_result(name, rankings, benchmark.qrels, latencies))
    return Report(
        collection=collection,
        queries=len(benchmark.qrels),
        rerank_model=model if reranks else None,
        rerank_depth=depth if reranks else None,
        stages=results,
    )


async def run_stage(
    pipeline: SearchPipeline,
    collection: str,
    benchmark: Benchmark,
    name: str,
    stage: Stage,
    *,
    depth: int,
    progress: bool,
) -> StageResult:
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    degraded = 0
    items = tqdm(
        benchmark.queries.items(), desc=name, unit="query", file=sys.stderr, disable=not progress, leave=False
    )
    for query_id, text in items:
        request = SearchQuery(
            text,
            collection,
            top_k=DEPTH,
            candidates=DEPTH,
            weights=stage.weights,
            rerank_enabled=stage.rerank,
            rerank_depth=depth,
            # The whole depth, however long: a time budget would make the figures depend on machine load.
            rerank_budget_ms=0,
        )
        started = time.perf_counter()
        outcome = await pipeline.search(request)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings[query_id] = [hit.id for hit in outcome.hits]
        degraded += bool(outcome.degraded)
    return stage_result(name, rankings, benchmark.qrels, latencies, degraded)


def stage_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"stages are a comma-separated subset of {','.join(STAGES)}")
    return list(dict.fromkeys(names))


def add_eval_command(commands: Any, config: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "eval", help="nDCG@10, Recall@100, MRR@10 and latency of each search stage", parents=[config]
    )
    parser.add_argument("folder", type=Path, help="a BEIR folder: queries.jsonl and qrels/<qrels>.tsv")
    parser.add_argument("--collection", required=True, type=collection_name, help="where it was indexed")
    parser.add_argument(
        "--stages",
        type=stage_list,
        default=list(STAGES),
        help=f"comma-separated stages to run, of {','.join(STAGES)} (default: all)",
    )
    parser.add_argument("--rerank-model", help="a configured rerank model (default: the search default)")
    parser.add_argument(
        "--rerank-depth", type=non_negative_int, help="hits reranked (default: [search.rerank] depth)"
    )
    parser.add_argument(
        "--max-queries", type=non_negative_int, help="evaluate only the first N judged queries"
    )
    parser.add_argument("--qrels", default="test", help="judgements file qrels/<name>.tsv (default test)")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also rank the folder's corpus with a textbook hybrid (stages ref-bm25, ref-dense, ref-hybrid)",
    )
    parser.add_argument(
        "--baseline", help="a stage to print every stage's deltas against, e.g. hybrid or ref-hybrid"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (with every query's scores) instead of a table"
    )
    parser.set_defaults(handler=run_eval)


def baseline_problem(args: argparse.Namespace) -> str | None:
    """Why --baseline names no stage that will run, if it does not."""
    run = [*args.stages, *(REFERENCE_STAGES if args.reference else ())]
    if args.baseline is None or args.baseline in run:
        return None
    hint = " (add --reference)" if args.baseline in REFERENCE_STAGES else ""
    return f"--baseline {args.baseline} is not among the stages run: {','.join(run)}{hint}"


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if problem := baseline_problem(args):
            raise ValueError(problem)
        benchmark = read_benchmark(args.folder, args.qrels, args.max_queries)
        if args.reference:
            beir_corpus(args.folder)  # the reference reads the corpus: fail before any query runs
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = evaluate(
        settings,
        args.collection,
        benchmark,
        stages=args.stages,
        rerank_model=args.rerank_model,
        rerank_depth=args.rerank_depth,
        progress=not args.json,
        reference=args.reference,
    )
    try:
        report = asyncio.run(work)
    except NotFound as exc:
        print(
            f"error: {exc}; index it first: fathom index {args.folder} --collection {args.collection}",
            file=sys.stderr,
        )
        return 1
    except StoreLocked as exc:
        print(
            f"error: {exc}; stop `fathom serve` (or another fathom command on this data_dir) "
            "and run `fathom eval` again",
            file=sys.stderr,
        )
        return 1
    if args.json:
        against = deltas(report.stages, args.baseline) if args.baseline else {}
        print(
            json.dumps(
                {
                    "folder": str(args.folder),
                    "qrels": args.qrels,
                    **asdict(report),
                    "baseline": args.baseline,
                    "deltas": {stage: asdict(d) for stage, d in against.items()},
                }
            )
        )
    else:
        print(f"{report.collection}: {report.queries} judged queries (qrels {args.qrels})")
        print(table(report.stages, args.baseline))
        if report.rerank_model is not None:
            print(f"rerank: model {report.rerank_model}, depth {report.rerank_depth}")
    return 0
