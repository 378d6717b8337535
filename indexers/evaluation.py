"""Retrieval quality as trec_eval computes it: nDCG@k with graded gains, Recall@k, MRR@k.

Every judged query counts, including those for which nothing relevant was retrieved (they score 0),
and pairs whose query id equals a document id are kept (BEIR's ignore_identical_ids=False).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

Qrels = dict[str, dict[str, int]]  # query id -> document id -> grade


def load_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def load_queries(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as handle:
        return {str(q["_id"]): q["text"] for q in map(json.loads, handle) if q}


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """Linear gains, log2 discount, ideal from every judged document (trec_eval's ndcg_cut)."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], 1))
    ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    ideal = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, 1))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranking[:k], 1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def mean_over_queries(
    rankings: Mapping[str, Sequence[str]], qrels: Qrels, metric: str = "ndcg", k: int = 10
) -> float:
    """The metric averaged over every query with a positive judgement; a missing ranking counts 0."""
    scores = per_query(rankings, qrels, metric, k)
    return sum(scores.values()) / len(scores) if scores else 0.0


def per_query(
    rankings: Mapping[str, Sequence[str]], qrels: Qrels, metric: str = "ndcg", k: int = 10
) -> dict[str, float]:
    """The metric of every query with a positive judgement, in qrels order; a missing ranking scores 0."""
    score = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}[metric]
    return {q: score(rankings.get(q, []), qrels[q], k) for q in judged_queries(qrels)}


def judged_queries(qrels: Qrels) -> list[str]:
    """Ids of the queries with at least one positive judgement: the ones every metric averages over."""
    return [query for query, judged in qrels.items() if any(grade > 0 for grade in judged.values())]
