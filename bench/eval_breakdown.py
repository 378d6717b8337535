"""Where a ranking loses to the reference: per-stage nDCG@10 by kind of query, from `fathom eval --json`.

Reads a report of `fathom eval FOLDER --collection NAME --reference --json` (every query's scores per
stage) and the BEIR folder it was run on, and prints, as Markdown tables, the mean nDCG@10 of every
stage over the judged queries split into terciles by

- length:  the query's terms after analysis (stop words out, stemmed, as the reference BM25 cuts it);
- rarity:  the mean IDF of those terms over the corpus (higher: rarer words);
- relevant length: the mean analysed length of the query's relevant documents;

with, per group, how many queries `hybrid` beats or loses to `ref-hybrid` by more than 0.05 nDCG@10.
Terciles cut the queries sorted by the value into three near-equal groups (ties may straddle a cut).

    .venv/bin/fathom eval ../shared/data/cacm --collection cacm --reference --json > /tmp/cacm.json
    .venv/bin/python bench/eval_breakdown.py /tmp/cacm.json [--folder ../shared/data/cacm]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexers.evaluation import Qrels, load_qrels, load_queries
from indexers.reference import analyze, document_text
from indexers.sources import beir_corpus, read_jsonl
from service.ingest.documents import Document

MARGIN = 0.05  # a query counts as won or lost past this much nDCG@10
SYSTEM, REFERENCE = "hybrid", "ref-hybrid"
GROUPS = ("low", "middle", "high")  # terciles of the value, lowest first


@dataclass(frozen=True, slots=True)
class QueryKinds:
    """What each judged query is like: the values its terciles are cut on."""

    terms: dict[str, float]
    mean_idf: dict[str, float]
    relevant_length: dict[str, float]


def terciles(values: Mapping[str, float]) -> list[list[str]]:
    """The keys sorted by value (ties by key) and cut into three groups of near-equal size."""
    ordered = sorted(values, key=lambda key: (values[key], key))
    size = len(ordered)
    cuts = [0, round(size / 3), round(2 * size / 3), size]
    return [ordered[cuts[i] : cuts[i + 1]] for i in range(3)]


def query_kinds(queries: Mapping[str, str], documents: Sequence[Document], qrels: Qrels) -> QueryKinds:
    """Length, mean IDF (Lucene's, over the corpus) and the relevant documents' mean length per query."""
    lengths: dict[str, int] = {}
    doc_freq: Counter[str] = Counter()
    for document in documents:
        terms = analyze(document_text(document))
        lengths[document.id] = len(terms)
        doc_freq.update(set(terms))
    total = len(documents)

    def idf(term: str) -> float:
        n = doc_freq.get(term, 0)
        return math.log(1 + (total - n + 0.5) / (n + 0.5))

    analysed = {query: analyze(text) for query, text in queries.items()}
    relevant = {
        query: [lengths[doc] for doc, grade in judged.items() if grade > 0 and doc in lengths]
        for query, judged in qrels.items()
    }
    return QueryKinds(
        terms={query: float(len(terms)) for query, terms in analysed.items()},
        mean_idf={
            query: statistics.fmean(map(idf, terms)) if terms else 0.0 for query, terms in analysed.items()
        },
        relevant_length={query: statistics.fmean(sizes) for query, sizes in relevant.items() if sizes},
    )


def ndcg_by_stage(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """stage -> query id -> nDCG@10, from the report's per-query scores."""
    return {
        stage["stage"]: {query: scores["ndcg_at_10"] for query, scores in stage["per_query"].items()}
        for stage in report["stages"]
    }


def group_table(title: str, values: Mapping[str, float], ndcg: Mapping[str, Mapping[str, float]]) -> str:
    """One row per tercile: its value range, query count, each stage's mean nDCG@10, hybrid's
    difference from the reference and the queries it wins and loses by more than MARGIN."""
    stages = list(ndcg)
    header = (
        f"| {title} | range | queries | "
        + " | ".join(stages)
        + f" | {SYSTEM} - {REFERENCE} | won / lost > {MARGIN} |"
    )
    lines = [header, "|" + " --- |" * (len(stages) + 5)]
    judged = [query for query in values if query in ndcg[SYSTEM]]
    for name, group in zip(GROUPS, terciles({q: values[q] for q in judged}), strict=True):
        if not group:
            continue
        means = {stage: statistics.fmean(ndcg[stage].get(q, 0.0) for q in group) for stage in stages}
        won, lost = margins(group, ndcg)
        span = f"{values[group[0]]:.3g} to {values[group[-1]]:.3g}"
        cells = " | ".join(f"{means[stage]:.4f}" for stage in stages)
        gap = means[SYSTEM] - means[REFERENCE]
        lines.append(f"| {name} | {span} | {len(group)} | {cells} | {gap:+.4f} | {won} / {lost} |")
    return "\n".join(lines)


def margins(queries: Sequence[str], ndcg: Mapping[str, Mapping[str, float]]) -> tuple[int, int]:
    """Queries where the system beats / loses to the reference by more than MARGIN."""
    changes = [ndcg[SYSTEM].get(q, 0.0) - ndcg[REFERENCE].get(q, 0.0) for q in queries]
    return sum(change > MARGIN for change in changes), sum(change < -MARGIN for change in changes)


def breakdown(report: Mapping[str, Any], folder: Path) -> str:
    ndcg = ndcg_by_stage(report)
    missing = {SYSTEM, REFERENCE} - set(ndcg)
    if missing:
        raise ValueError(
            f"the report lacks stage(s) {', '.join(sorted(missing))}: run fathom eval with --reference"
        )
    queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / f"{report.get('qrels', 'test')}.tsv")
    documents = [record for record in read_jsonl(beir_corpus(folder)) if isinstance(record, Document)]
    judged = {query: queries.get(query, "") for query in ndcg[SYSTEM]}
    kinds = query_kinds(judged, documents, qrels)
    means = " | ".join(f"{stage} {statistics.fmean(scores.values()):.4f}" for stage, scores in ndcg.items())
    won, lost = margins(list(ndcg[SYSTEM]), ndcg)
    return "\n\n".join(
        [
            f"{report['collection']}: {len(ndcg[SYSTEM])} judged queries; nDCG@10 {means}",
            f"{SYSTEM} beats {REFERENCE} by > {MARGIN} on {won} queries, loses by > {MARGIN} on {lost}",
            group_table("query terms", kinds.terms, ndcg),
            group_table("mean IDF", kinds.mean_idf, ndcg),
            group_table("relevant doc terms", kinds.relevant_length, ndcg),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the output of fathom eval --reference --json")
    parser.add_argument("--folder", type=Path, help="the BEIR folder (default: the report's own)")
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    print(breakdown(report, args.folder or Path(report["folder"])))


if __name__ == "__main__":
    main()
