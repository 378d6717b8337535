"""Rerank throughput and latency: Fathom over HTTP against fastembed's own `rerank`, in the same run.

Workload: one Cranfield query and `--docs` Cranfield abstracts of 100 to 200 words (the first ones in
corpus order). The baseline is fastembed `TextCrossEncoder.rerank(query, docs, batch_size=64)` in this
process, on the same model folder and the same 512-token `longest_first` truncation. Fathom is the real
server (`fathom serve`) in a subprocess with auth on, measured with httpx: one client sending sequential
requests, then `--clients` concurrent clients. Machine speed varies, so every verdict is a ratio against
the baseline; baseline and 1-client rounds are interleaved so drift hits both alike.

    .venv/bin/python bench/rerank.py                       # defaults: 100 docs, 3 rounds, 8 clients
    FATHOM_RERANK__BATCH_SIZE=32 .venv/bin/python bench/rerank.py --json out.json
    .venv/bin/python bench/rerank.py --server-env FATHOM_RERANK__MAX_WAIT_MS=0 \\
        --server-env FATHOM_RERANK__THREADS=2

FATHOM_* variables of the calling environment reach the server (except FATHOM_CONFIG and FATHOM_DATA_DIR,
which the bench sets); `--server-env` adds more. Exit status: 0 when every ratio meets `--target` and the
scores agree, 1 when a ratio is below target or the scores disagree, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from _rerank_measure import (
    Agreement,
    agreement,
    burst,
    concurrent_run,
    cpu_hogs,
    interleaved_rounds,
    server_metrics,
    warm_up_and_compare,
)
from _rerank_report import Report, print_report
from _rerank_workload import MODEL_ID, Baseline, Workload, build_workload, padded_tokens, read_queries
from _stats import load, percentile

from service.testing.live_server import Served, SetupError, fathom_serve

REPO_ROOT = Path(__file__).resolve().parent.parent
# The burst runs at the time limit a server has out of the box ([rerank] request_timeout's default).
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MODEL_DIR = REPO_ROOT.parent / "shared" / "models" / "cross-encoder-minilm-l6-bench"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "cranfield"


def write_config(path: Path, model_dir: Path, max_length: int, quantize: str = "none") -> None:
    path.write_text(
        "\n".join(
            [
                "# written by bench/rerank.py",
                "[auth]",
                "enabled = true",
                "[rerank]",
                f'default_model = "{MODEL_ID}"',
                f"max_length = {max_length}",
                # Throughput is measured, not the time limit: a busy machine must not cut 8 x 100 pairs.
                "request_timeout = 3600",
                f"[rerank.models.{MODEL_ID}]",
                f"path = {json.dumps(str(model_dir.resolve()))}",
                f'quantize = "{quantize}"',
                '[rerank.models."BAAI/bge-reranker-v2-m3"]',
                "enabled = false",
                "[search]",  # a rerank-only server: no stores or embedding model to open
                "enabled = false",
                "",
            ]
        ),
        encoding="utf-8",
    )


@contextmanager
def rerank_server(
    model_dir: Path, max_length: int, env: dict[str, str], *, port: int, timeout: float, quantize: str
) -> Iterator[Served]:
    """A rerank-only `fathom serve` on a temporary data dir and config, the model registered as `bench`."""

    def model_failed(response: httpx.Response, served: Served) -> None:
        if response.json().get("models", {}).get(MODEL_ID) == "failed":
            raise SetupError(f"model {MODEL_ID!r} failed to load:\n{served.log_tail()}")

    with tempfile.TemporaryDirectory(prefix="fathom-bench-") as tmp:
        config = Path(tmp) / "bench.toml"
        write_config(config, model_dir, max_length, quantize)
        with fathom_serve(
            config,
            env={**env, "FATHOM_DATA_DIR": tmp},
            with_key=True,
            port=port,
            startup_timeout=timeout,
            check_not_ready=model_failed,
        ) as served:
            yield served


# Besides Fathom's settings, the runtime variables worth an A/B on a server's CPU use.
RUNTIME_ENV = ("TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not (name.startswith("FATHOM_") or name in RUNTIME_ENV):
            raise SetupError(
                f"--server-env wants FATHOM_NAME=VALUE (or {', '.join(RUNTIME_ENV)}), got {item!r}"
            )
        env[name] = value
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fathom rerank over HTTP vs fastembed in process: pairs/s and latency ratios."
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="cross-encoder folder")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="Cranfield BEIR folder")
    parser.add_argument("--docs", type=int, default=100, help="documents per request (default 100)")
    parser.add_argument("--min-words", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=200)
    parser.add_argument("--query-index", type=int, default=0, help="line of queries.jsonl (default 0)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed baseline calls and 1-client requests (default 3)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each before timing (>= 1)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--requests-per-client", type=int, default=1, help="sequential requests per concurrent client"
    )
    parser.add_argument(
        "--baseline-batch-size", type=int, default=64, help="fastembed rerank batch_size (default 64)"
    )
    parser.add_argument("--port", type=int, default=0, help="server port; 0 picks a free one")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="FATHOM_X=V",
        help="extra setting for the server, e.g. FATHOM_RERANK__BATCH_SIZE=32 (repeatable)",
    )
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for /readyz")
    parser.add_argument(
        "--target",
        type=float,
        help="pairs/s ratio to reach (default: 2.2 for int8, 1.2 under --noise, else 1.3)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    parser.add_argument(
        "--quantize", choices=["none", "int8"], default="none", help="the server's model: fp32 or int8"
    )
    parser.add_argument(
        "--noise", action="store_true", help="one nice-19 busy loop per core during both measurements"
    )
    parser.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="FATHOM_X=V",
        help="A/B: a second server with these settings too, measured in the same rounds (repeatable)",
    )
    parser.add_argument(
        "--burst-clients",
        type=int,
        default=8,
        help="clients sending one request each at once, to see refusals come at once (0: skip)",
    )
    parser.add_argument(
        "--agreement-queries", type=int, default=5, help="queries scored against fp32 for agreement"
    )
    return parser


def run(args: argparse.Namespace) -> list[Report]:
    started = time.perf_counter()
    if args.target is None:
        args.target = 2.2 if args.quantize == "int8" else 1.2 if args.noise else 1.3
    if min(args.docs, args.rounds, args.warmup, args.clients, args.requests_per_client) < 1:
        raise SetupError("--docs, --rounds, --warmup, --clients and --requests-per-client must be >= 1")
    model_dir: Path = args.model_dir
    if not (model_dir / "tokenizer_config.json").is_file():
        raise SetupError(f"{model_dir} is not a model folder (no tokenizer_config.json); see --model-dir")
    server_env = {k: v for k, v in os.environ.items() if k.startswith("FATHOM_")}
    server_env.pop("FATHOM_CONFIG", None)
    server_env.pop("FATHOM_DATA_DIR", None)
    server_env.update(parse_env(args.server_env))

    workload = build_workload(args.data_dir, args.docs, args.min_words, args.max_words, args.query_index)
    docs = len(workload.documents)
    print(f"workload: query {workload.query_id} ({workload.query!r}), {docs} Cranfield abstracts")

    baseline = Baseline(model_dir, args.baseline_batch_size)
    print(
        f"fastembed truncation: max_length={baseline.max_length} strategy={baseline.truncation_strategy} "
        f"(tokenizer_config.json model_max_length={baseline.config_max_length})"
    )
    if baseline.max_length != 512:
        print(f"WARNING: fastembed truncates at {baseline.max_length}, not 512", file=sys.stderr)
    lengths = baseline.token_lengths(workload.query, workload.documents)
    useful = sum(lengths)
    fathom_batch = int(server_env.get("FATHOM_RERANK__BATCH_SIZE", "16"))
    waste_unsorted = padded_tokens(lengths, args.baseline_batch_size, sort=False) / useful
    waste_sorted = padded_tokens(lengths, fathom_batch, sort=True) / useful
    print(
        f"pair tokens: min {min(lengths)}, mean {useful / docs:.0f}, max {max(lengths)}; tokens run / "
        f"tokens needed: fastembed batches of {args.baseline_batch_size} {waste_unsorted:.2f}, "
        f"length-sorted batches of {fathom_batch} {waste_sorted:.2f}"
    )
    if server_env:
        print("server settings from the environment: " + ", ".join(f"{k}={v}" for k, v in server_env.items()))

    variants = {"server": server_env}
    if args.compare_env:
        variants["compared"] = {**server_env, **parse_env(args.compare_env)}
    load_start = load()
    print(load_start)
    with ExitStack() as stack:
        servers = {
            label: stack.enter_context(
                rerank_server(
                    model_dir,
                    baseline.max_length,
                    env,
                    port=args.port if label == "server" else 0,
                    timeout=args.startup_timeout,
                    quantize=args.quantize,
                )
            )
            for label, env in variants.items()
        }
        hogs = stack.enter_context(cpu_hogs(args.noise))
        print(
            f"Fathom ready at {', '.join(s.url for s in servers.values())}; {hogs} nice-19 busy loops; "
            "warming up"
        )
        max_diff = {
            label: warm_up_and_compare(baseline, s, workload, args.warmup) for label, s in servers.items()
        }
        baseline_latencies, fathom_latencies = interleaved_rounds(
            baseline, list(servers.values()), workload, args.rounds
        )
        concurrent: dict[str, tuple[float, list[float], dict[str, float]]] = {}
        for label, server in servers.items():
            before = server_metrics(server)
            print(f"  {label}: {args.clients} clients x {args.requests_per_client} requests ...")
            wall, latencies = concurrent_run(server, workload, args.clients, args.requests_per_client)
            after = server_metrics(server)
            batching = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
            concurrent[label] = (wall, latencies, batching)
        queries = read_queries(args.data_dir, args.query_index, args.agreement_queries)
        agreements = {label: agreement(baseline, s, workload, queries) for label, s in servers.items()}
    burst_at_the_default_limit(args, model_dir, baseline.max_length, server_env, workload)
    load_end = load()

    return build_reports(
        args,
        Measured(
            variants,
            baseline_latencies,
            fathom_latencies,
            concurrent,
            max_diff,
            agreements,
            hogs,
            started,
            load_start,
            load_end,
            workload.query_id,
            docs,
            useful,
            waste_unsorted,
            waste_sorted,
            baseline.max_length,
        ),
    )


def burst_at_the_default_limit(
    args: argparse.Namespace, model_dir: Path, max_length: int, env: dict[str, str], workload: Workload
) -> None:
    """The burst, on a server of its own at the default request_timeout (the others run without one)."""
    if not args.burst_clients:
        return
    env = {**env, "FATHOM_RERANK__REQUEST_TIMEOUT": str(DEFAULT_REQUEST_TIMEOUT)}
    with rerank_server(
        model_dir, max_length, env, port=0, timeout=args.startup_timeout, quantize=args.quantize
    ) as server:
        docs, limit = len(workload.documents), DEFAULT_REQUEST_TIMEOUT
        print(
            f"  burst: {args.burst_clients} clients x {docs} documents at once, request_timeout {limit:g} s"
        )
        print(f"    {burst(server, workload, args.burst_clients).summary()}")


@dataclass(frozen=True, slots=True)
class Measured:
    variants: dict[str, dict[str, str]]
    baseline_latencies: list[float]
    fathom_latencies: list[list[float]]
    concurrent: dict[str, tuple[float, list[float], dict[str, float]]]
    max_diff: dict[str, float]
    agreements: dict[str, list[Agreement]]
    hogs: int
    started: float
    load_start: str
    load_end: str
    query_id: str
    docs: int
    useful_tokens: int
    waste_unsorted: float
    waste_sorted: float
    max_length: int


def build_reports(args: argparse.Namespace, m: Measured) -> list[Report]:
    """One report per server, each against the same baseline rounds."""
    docs = m.docs
    baseline_latency = statistics.median(m.baseline_latencies)
    baseline_pps = docs / baseline_latency
    reports = []
    for (label, env), single in zip(m.variants.items(), m.fathom_latencies, strict=True):
        wall, latencies, batching = m.concurrent[label]
        fathom1_p50 = percentile(single, 50)
        fathom_n_pps = docs * len(latencies) / wall
        reports.append(
            Report(
                label=label,
                docs=docs,
                query_id=m.query_id,
                rounds=args.rounds,
                clients=args.clients,
                requests_per_client=args.requests_per_client,
                baseline_batch_size=args.baseline_batch_size,
                max_length=m.max_length,
                server_env=env,
                pair_tokens_mean=m.useful_tokens / docs,
                padding_waste_unsorted=m.waste_unsorted,
                padding_waste_sorted=m.waste_sorted,
                baseline_latency_s=baseline_latency,
                baseline_latencies_s=m.baseline_latencies,
                baseline_pairs_per_s=baseline_pps,
                fathom1_p50_s=fathom1_p50,
                fathom1_p95_s=percentile(single, 95),
                fathom1_latencies_s=single,
                fathom1_pairs_per_s=docs / fathom1_p50,
                fathomN_p50_s=percentile(latencies, 50),
                fathomN_p95_s=percentile(latencies, 95),
                fathomN_wall_s=wall,
                fathomN_pairs_per_s=fathom_n_pps,
                ratio_pairs_1=docs / fathom1_p50 / baseline_pps,
                ratio_pairs_n=fathom_n_pps / baseline_pps,
                ratio_latency_1=baseline_latency / fathom1_p50,
                max_score_diff=m.max_diff[label],
                target=args.target,
                batching=batching,
                run_seconds=time.perf_counter() - m.started,
                quantize=args.quantize,
                noise=m.hogs,
                agreements=m.agreements[label],
                load_start=m.load_start,
                load_end=m.load_end,
            )
        )
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reports = run(args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print_report(report)
    if args.json:
        payload = [{**asdict(r), "passed": r.passed, "scores_ok": r.scores_ok} for r in reports]
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if all(r.passed and r.scores_ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
