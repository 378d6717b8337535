"""The rerank bench's figures and verdicts, as printed and as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from _rerank_measure import Agreement

SCORE_TOLERANCE = 1e-4
# What int8 must keep of fp32's ranking, per query: enough that a search's first page stays as fp32
# would order it.
MIN_SPEARMAN = 0.95
MIN_TOP10 = 0.9


@dataclass(slots=True)
class Report:
    label: str
    docs: int
    query_id: str
    rounds: int
    clients: int
    requests_per_client: int
    baseline_batch_size: int
    max_length: int
    server_env: dict[str, str]
    pair_tokens_mean: float
    padding_waste_unsorted: float
    padding_waste_sorted: float
    baseline_latency_s: float
    baseline_latencies_s: list[float]
    baseline_pairs_per_s: float
    fathom1_p50_s: float
    fathom1_p95_s: float
    fathom1_latencies_s: list[float]
    fathom1_pairs_per_s: float
    fathomN_p50_s: float
    fathomN_p95_s: float
    fathomN_wall_s: float
    fathomN_pairs_per_s: float
    ratio_pairs_1: float
    ratio_pairs_n: float
    ratio_latency_1: float
    max_score_diff: float
    target: float
    batching: dict[str, float] = field(default_factory=dict)
    run_seconds: float = 0.0
    quantize: str = "none"
    noise: int = 0
    agreements: list[Agreement] = field(default_factory=list)
    load_start: str = ""
    load_end: str = ""

    @property
    def scores_ok(self) -> bool:
        """fp32 reproduces fastembed; int8 ranks as fp32 does (Spearman, top-10 overlap per query)."""
        if self.quantize == "none":
            return self.max_score_diff <= SCORE_TOLERANCE
        return all(a.spearman >= MIN_SPEARMAN and a.top10_overlap >= MIN_TOP10 for a in self.agreements)

    @property
    def passed(self) -> bool:
        return self.ratio_pairs_1 >= self.target and self.ratio_pairs_n >= self.target


def print_report(r: Report) -> None:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:9.0f} ms"

    n = r.clients
    rows = [
        ("baseline fastembed (in process)", r.baseline_pairs_per_s, ms(r.baseline_latency_s), "-", "1.00x"),
        (
            "Fathom HTTP, 1 client",
            r.fathom1_pairs_per_s,
            ms(r.fathom1_p50_s),
            ms(r.fathom1_p95_s),
            f"{r.ratio_pairs_1:.2f}x",
        ),
        (
            f"Fathom HTTP, {n} clients",
            r.fathomN_pairs_per_s,
            ms(r.fathomN_p50_s),
            ms(r.fathomN_p95_s),
            f"{r.ratio_pairs_n:.2f}x",
        ),
    ]
    print()
    print(f"== {r.label}: " + (", ".join(f"{k}={v}" for k, v in r.server_env.items()) or "default settings"))
    print(f"{'':34}{'pairs/s':>10}{'p50 latency':>15}{'p95 latency':>15}{'pairs/s ratio':>15}")
    for name, pairs, p50, p95, ratio in rows:
        print(f"{name:34}{pairs:10.1f}{p50:>15}{p95:>15}{ratio:>15}")
    print()
    print(f"latency ratio, baseline / Fathom 1-client p50:       {r.ratio_latency_1:.2f}x")
    print(
        f"latency, Fathom {n}-client p50 / baseline:             "
        f"{r.fathomN_p50_s / r.baseline_latency_s:.2f}x  (requests queue behind each other)"
    )
    verdict = "PASS" if r.passed else "BELOW"
    print(
        f"target: pairs/s ratio >= {r.target:.2f}x with 1 and with {n} clients: "
        f"1 client {r.ratio_pairs_1:.2f}x, {n} clients {r.ratio_pairs_n:.2f}x -> {verdict}"
    )
    agree = "OK" if r.scores_ok else "MISMATCH"
    print(f"model: {r.quantize if r.quantize != 'none' else 'fp32'}; noise: {r.noise} nice-19 busy loops")
    print(
        f"scores: max |Fathom - sigmoid(fastembed logits)| = {r.max_score_diff:.2e} "
        f"(tolerance {SCORE_TOLERANCE:.0e}{', fp32 only' if r.quantize != 'none' else ''})"
    )
    for a in r.agreements:
        print(
            f"  agreement with fp32, query {a.query_id:>4}: "
            f"Spearman {a.spearman:.3f}, top-10 overlap {a.top10_overlap:.1f}"
        )
    print(
        f"agreement target (int8): Spearman >= {MIN_SPEARMAN} and top-10 overlap >= {MIN_TOP10} per query"
        f" -> {agree}"
    )
    if r.batching:
        batches = r.batching.get("batches", 0)
        if batches:
            print(
                f"Fathom batching: {batches:.0f} ONNX runs, {r.batching.get('batch_pairs', 0) / batches:.1f} "
                f"pairs and {r.batching.get('batch_requests', 0) / batches:.2f} requests per run on average"
            )
    print(f"run time: {r.run_seconds:.0f} s; {r.load_start} at the start, {r.load_end} at the end")
