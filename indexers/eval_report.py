"""What `fathom eval` reports: each stage's means and per-query scores, and deltas against a baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from indexers.evaluation import Qrels, per_query
from service.search.floor import percentile

CUT = 10  # nDCG@10, MRR@10
DEPTH = 100  # Recall@100
METRICS = {"ndcg_at_10": ("ndcg", CUT), "recall_at_100": ("recall", DEPTH), "mrr_at_10": ("mrr", CUT)}


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    p50_ms: float
    p95_ms: float
    degraded: int  # queries answered with a stage missing (a failed retriever or reranker)
    # query id -> metric name -> score, for every judged query: where a change wins and loses
    per_query: dict[str, dict[str, float]]


@dataclass(frozen=True, slots=True)
class Delta:
    """A stage against the baseline: differences of the means, and queries whose nDCG@10 rose or fell."""

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    wins: int
    losses: int


def stage_result(
    stage: str,
    rankings: Mapping[str, Sequence[str]],
    qrels: Qrels,
    latencies: Sequence[float],
    degraded: int = 0,
) -> StageResult:
    """Means over every judged query (a query with no ranking scores 0) and each query's own scores."""
    scores = {name: per_query(rankings, qrels, metric, k) for name, (metric, k) in METRICS.items()}
    means = {name: sum(values.values()) / len(values) if values else 0.0 for name, values in scores.items()}
    queries = scores["ndcg_at_10"]
    return StageResult(
        stage=stage,
        ndcg_at_10=means["ndcg_at_10"],
        recall_at_100=means["recall_at_100"],
        mrr_at_10=means["mrr_at_10"],
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        degraded=degraded,
        per_query={q: {name: scores[name][q] for name in METRICS} for q in queries},
    )


def delta(result: StageResult, baseline: StageResult) -> Delta:
    changes = [
        result.per_query[q]["ndcg_at_10"] - baseline.per_query[q]["ndcg_at_10"]
        for q in result.per_query
        if q in baseline.per_query
    ]
    return Delta(
        ndcg_at_10=result.ndcg_at_10 - baseline.ndcg_at_10,
        recall_at_100=result.recall_at_100 - baseline.recall_at_100,
        mrr_at_10=result.mrr_at_10 - baseline.mrr_at_10,
        wins=sum(change > 0 for change in changes),
        losses=sum(change < 0 for change in changes),
    )


def deltas(results: Sequence[StageResult], baseline: str) -> dict[str, Delta]:
    """Every stage against the one named `baseline`; KeyError when no stage has that name."""
    base = {r.stage: r for r in results}[baseline]
    return {r.stage: delta(r, base) for r in results}


def table(results: Sequence[StageResult], baseline: str | None = None) -> str:
    against = deltas(results, baseline) if baseline else {}
    extra = f" {'ΔnDCG@10':>9} {'ΔR@100':>8} {'+/- queries':>11}" if baseline else ""
    header = f"{'stage':<10} {'nDCG@10':>8} {'Recall@100':>10} {'MRR@10':>8} {'p50 ms':>8} {'p95 ms':>8}"
    lines = [header + extra]
    for r in results:
        line = (
            f"{r.stage:<10} {r.ndcg_at_10:>8.4f} {r.recall_at_100:>10.4f} {r.mrr_at_10:>8.4f} "
            f"{r.p50_ms:>8.1f} {r.p95_ms:>8.1f}"
        )
        if r.stage in against:
            d = against[r.stage]
            line += f" {d.ndcg_at_10:>+9.4f} {d.recall_at_100:>+8.4f} {f'{d.wins}/{d.losses}':>11}"
        lines.append(line)
    lines += [f"warning: {r.stage}: {r.degraded} queries answered degraded" for r in results if r.degraded]
    if baseline:
        lines.append(f"deltas against {baseline}; +/- queries: judged queries whose nDCG@10 rose/fell")
    return "\n".join(lines)
