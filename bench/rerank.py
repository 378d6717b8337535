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
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT.parent / "shared" / "models" / "cross-encoder-minilm-l6-bench"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "cranfield"
MODEL_ID = "bench"
SCORE_TOLERANCE = 1e-4
# What int8 must keep of fp32's ranking, per query (issue 10).
MIN_SPEARMAN = 0.95
MIN_TOP10 = 0.9


class BenchError(Exception):
    """A setup problem the bench cannot measure through; the message says what to fix."""


# --- workload ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    query: str
    query_id: str
    documents: list[str]
    document_ids: list[str]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def build_workload(data_dir: Path, docs: int, min_words: int, max_words: int, query_index: int) -> Workload:
    """The query at `query_index` and the first `docs` abstracts (corpus order) of min..max words."""
    corpus, queries = data_dir / "corpus.jsonl", data_dir / "queries.jsonl"
    for path in (corpus, queries):
        if not path.is_file():
            raise BenchError(f"{path} does not exist (BEIR jsonl expected; see --data-dir)")
    all_queries = list(read_jsonl(queries))
    if not 0 <= query_index < len(all_queries):
        raise BenchError(f"--query-index {query_index} is out of range: {queries} has {len(all_queries)}")
    query = all_queries[query_index]
    picked = [
        record
        for record in read_jsonl(corpus)
        if min_words <= len(str(record.get("text", "")).split()) <= max_words
    ][:docs]
    if len(picked) < docs:
        raise BenchError(f"only {len(picked)} documents of {min_words}..{max_words} words, {docs} wanted")
    return Workload(
        query=str(query["text"]),
        query_id=str(query["_id"]),
        documents=[str(record["text"]) for record in picked],
        document_ids=[str(record["_id"]) for record in picked],
    )


# --- baseline: fastembed in process ------------------------------------------------------------------


class Baseline:
    """fastembed's TextCrossEncoder on the model folder, loaded the way Fathom loads a local folder."""

    def __init__(self, model_dir: Path, batch_size: int) -> None:
        from fastembed.common.model_description import ModelSource
        from fastembed.rerank.cross_encoder import TextCrossEncoder

        name = f"bench-baseline/{model_dir.resolve()}"
        known = {m["model"].lower() for m in TextCrossEncoder.list_supported_models()}
        if name.lower() not in known:
            model_file = "model.onnx" if (model_dir / "model.onnx").is_file() else "onnx/model.onnx"
            TextCrossEncoder.add_custom_model(
                name, sources=ModelSource(hf=MODEL_ID), model_file=model_file, description="bench baseline"
            )
        self.encoder = TextCrossEncoder(name, specific_model_path=str(model_dir), cuda=False)
        self.batch_size = batch_size
        inner: Any = self.encoder.model
        truncation = inner.tokenizer.truncation or {}
        self.max_length = int(truncation.get("max_length", 0))
        self.truncation_strategy = str(truncation.get("strategy", "?"))
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.config_max_length = config.get("model_max_length")

    def logits(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return np.asarray(list(self.encoder.rerank(query, documents, batch_size=self.batch_size)))

    def token_lengths(self, query: str, documents: Sequence[str]) -> list[int]:
        """Unpadded pair lengths after truncation: the work a length-sorted batcher pays for."""
        inner: Any = self.encoder.model
        encodings = inner.tokenizer.encode_batch([(query, doc) for doc in documents])
        return [sum(encoding.attention_mask) for encoding in encodings]


def padded_tokens(lengths: Sequence[int], batch_size: int, *, sort: bool) -> int:
    """Tokens the model runs when batches are padded to their longest pair."""
    ordered = sorted(lengths) if sort else list(lengths)
    return sum(
        len(chunk) * max(chunk)
        for chunk in (ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    )


# --- the Fathom server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fathom_command() -> list[str]:
    script = Path(sys.executable).parent / "fathom"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


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


@dataclass(slots=True)
class Server:
    base_url: str
    key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no server log)"


@contextmanager
def fathom_server(
    model_dir: Path,
    port: int,
    max_length: int,
    extra_env: dict[str, str],
    startup_timeout: float,
    *,
    quantize: str = "none",
) -> Iterator[Server]:
    """`fathom serve` on a temporary data dir and config, with a fresh key; stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="fathom-bench-") as tmp:
        tmp_dir = Path(tmp)
        config = tmp_dir / "bench.toml"
        write_config(config, model_dir, max_length, quantize)
        env = {**os.environ, **extra_env, "FATHOM_CONFIG": str(config), "FATHOM_DATA_DIR": str(tmp_dir)}
        command = fathom_command()
        created = subprocess.run(
            [*command, "keys", "create", "--name", "bench"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0 or not created.stdout.strip():
            raise BenchError(f"`fathom keys create` failed ({created.returncode}): {created.stderr.strip()}")
        key = created.stdout.strip().splitlines()[-1].strip()
        port = port or free_port()
        log_path = tmp_dir / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", key, process, log_path)
        try:
            wait_ready(server, startup_timeout)
            yield server
        finally:
            stop(process)


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(
                    f"the server exited with status {server.process.returncode}:\n{server.log_tail()}"
                )
            try:
                response = client.get("/readyz")
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                last = response.text
                models = response.json().get("models", {})
                if models.get(MODEL_ID) == "failed":
                    raise BenchError(f"model {MODEL_ID!r} failed to load:\n{server.log_tail()}")
            time.sleep(0.2)
    raise BenchError(f"the server was not ready after {timeout:.0f} s ({last}):\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def server_metrics(server: Server) -> dict[str, float]:
    """Batching counters from /metrics: ONNX runs, pairs, and requests per batch."""
    wanted = {
        "fathom_rerank_batch_pairs_count": "batches",
        "fathom_rerank_batch_pairs_sum": "batch_pairs",
        "fathom_rerank_cycle_requests_sum": "batch_requests",
    }
    found: dict[str, float] = {}
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted and f'model="{MODEL_ID}"' in line:
            found[wanted[name]] = float(line.rsplit(" ", 1)[1])
    return found


# --- measuring ---------------------------------------------------------------------------------------------


def rerank_request(client: httpx.Client, workload: Workload) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post("/v1/rerank", json={"query": workload.query, "documents": workload.documents})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"POST /v1/rerank answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return elapsed, body


def scores_by_index(body: dict[str, Any], count: int) -> np.ndarray:
    scores = np.full(count, np.nan)
    for result in body["results"]:
        scores[int(result["index"])] = float(result["relevance_score"])
    return scores


def client_for(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=httpx.Timeout(600.0, connect=10.0),
    )


def concurrent_run(
    server: Server, workload: Workload, clients: int, per_client: int
) -> tuple[float, list[float]]:
    """`clients` threads, each its own connection and sequential loop; (wall seconds, every latency)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def loop() -> None:
        try:
            with client_for(server) as client:
                barrier.wait()
                for _ in range(per_client):
                    elapsed, _body = rerank_request(client, workload)
                    with lock:
                        latencies.append(elapsed)
        except BaseException as exc:  # reported by the main thread
            with lock:
                errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise BenchError(f"a concurrent client failed: {errors[0]!r}")
    return wall, latencies


def warm_up_and_compare(baseline: Baseline, server: Server, workload: Workload, warmup: int) -> float:
    """Warm both up; the first answers give the largest |Fathom score - sigmoid(fastembed logit)|."""
    logits = baseline.logits(workload.query, workload.documents)
    for _ in range(warmup - 1):
        baseline.logits(workload.query, workload.documents)
    with client_for(server) as client:
        _, body = rerank_request(client, workload)
        for _ in range(warmup - 1):
            rerank_request(client, workload)
    expected = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    diff = np.abs(scores_by_index(body, len(workload.documents)) - expected)
    return math.inf if np.isnan(diff).any() else float(np.max(diff))


@dataclass(frozen=True, slots=True)
class Agreement:
    """How a query's Fathom scores rank the documents against fastembed fp32's (the baseline)."""

    query_id: str
    spearman: float
    top10_overlap: float


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (scores of distinct pairs hardly ever tie, so plain ranks do)."""
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def agreement(
    baseline: Baseline, server: Server, workload: Workload, queries: list[tuple[str, str]]
) -> list[Agreement]:
    """Per query: Spearman of the scores and the overlap of the top 10, Fathom against fp32 fastembed."""
    found = []
    with client_for(server) as client:
        for query_id, text in queries:
            asked = Workload(text, query_id, workload.documents, workload.document_ids)
            expected = baseline.logits(text, workload.documents)
            _, body = rerank_request(client, asked)
            scores = scores_by_index(body, len(workload.documents))
            top = len(set(np.argsort(-expected)[:10]) & set(np.argsort(-scores)[:10])) / 10
            found.append(Agreement(query_id, spearman(expected, scores), top))
    return found


def read_queries(data_dir: Path, first: int, count: int) -> list[tuple[str, str]]:
    records = list(read_jsonl(data_dir / "queries.jsonl"))[first : first + count]
    return [(str(record["_id"]), str(record["text"])) for record in records]


@contextmanager
def cpu_hogs(enabled: bool) -> Iterator[int]:
    """A noisy neighbour: one busy loop per core at the lowest priority (nice 19), for the block."""
    if not enabled:
        yield 0
        return
    hogs = [
        subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


def interleaved_rounds(
    baseline: Baseline, server: Server, workload: Workload, rounds: int
) -> tuple[list[float], list[float]]:
    """Baseline call, then one Fathom request, `rounds` times: drift in machine speed hits both."""
    baseline_latencies: list[float] = []
    fathom_latencies: list[float] = []
    with client_for(server) as client:
        for round_no in range(rounds):
            started = time.perf_counter()
            baseline.logits(workload.query, workload.documents)
            baseline_latencies.append(time.perf_counter() - started)
            elapsed, _ = rerank_request(client, workload)
            fathom_latencies.append(elapsed)
            print(
                f"  round {round_no + 1}/{rounds}: baseline {baseline_latencies[-1] * 1000:.0f} ms, "
                f"Fathom {elapsed * 1000:.0f} ms"
            )
    return baseline_latencies, fathom_latencies


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# --- report -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
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
    print(f"run time: {r.run_seconds:.0f} s")


# --- main -------------------------------------------------------------------------------------------------


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("FATHOM_"):
            raise BenchError(f"--server-env wants FATHOM_NAME=VALUE, got {item!r}")
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
    parser.add_argument("--target", type=float, default=1.3, help="pairs/s ratio to reach (default 1.3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    parser.add_argument(
        "--quantize", choices=["none", "int8"], default="none", help="the server's model: fp32 or int8"
    )
    parser.add_argument(
        "--noise", action="store_true", help="one nice-19 busy loop per core during both measurements"
    )
    parser.add_argument(
        "--agreement-queries", type=int, default=5, help="queries scored against fp32 for agreement"
    )
    return parser


def run(args: argparse.Namespace) -> Report:
    started = time.perf_counter()
    if min(args.docs, args.rounds, args.warmup, args.clients, args.requests_per_client) < 1:
        raise BenchError("--docs, --rounds, --warmup, --clients and --requests-per-client must be >= 1")
    model_dir: Path = args.model_dir
    if not (model_dir / "tokenizer_config.json").is_file():
        raise BenchError(f"{model_dir} is not a model folder (no tokenizer_config.json); see --model-dir")
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

    with (
        fathom_server(
            model_dir,
            args.port,
            baseline.max_length,
            server_env,
            args.startup_timeout,
            quantize=args.quantize,
        ) as server,
        cpu_hogs(args.noise) as hogs,
    ):
        print(f"Fathom ready at {server.base_url}; {hogs} nice-19 busy loops running; warming up")
        max_diff = warm_up_and_compare(baseline, server, workload, args.warmup)
        baseline_latencies, fathom_latencies = interleaved_rounds(baseline, server, workload, args.rounds)
        before = server_metrics(server)
        print(f"  {args.clients} clients x {args.requests_per_client} requests ...")
        wall, concurrent_latencies = concurrent_run(server, workload, args.clients, args.requests_per_client)
        after = server_metrics(server)
        batching = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
        queries = read_queries(args.data_dir, args.query_index, args.agreement_queries)
        agreements = agreement(baseline, server, workload, queries)

    baseline_latency = statistics.median(baseline_latencies)
    fathom1_p50 = percentile(fathom_latencies, 50)
    baseline_pps = docs / baseline_latency
    fathom1_pps = docs / fathom1_p50
    fathom_n_pps = docs * len(concurrent_latencies) / wall
    return Report(
        docs=docs,
        query_id=workload.query_id,
        rounds=args.rounds,
        clients=args.clients,
        requests_per_client=args.requests_per_client,
        baseline_batch_size=args.baseline_batch_size,
        max_length=baseline.max_length,
        server_env=server_env,
        pair_tokens_mean=useful / docs,
        padding_waste_unsorted=waste_unsorted,
        padding_waste_sorted=waste_sorted,
        baseline_latency_s=baseline_latency,
        baseline_latencies_s=baseline_latencies,
        baseline_pairs_per_s=baseline_pps,
        fathom1_p50_s=fathom1_p50,
        fathom1_p95_s=percentile(fathom_latencies, 95),
        fathom1_latencies_s=fathom_latencies,
        fathom1_pairs_per_s=fathom1_pps,
        fathomN_p50_s=percentile(concurrent_latencies, 50),
        fathomN_p95_s=percentile(concurrent_latencies, 95),
        fathomN_wall_s=wall,
        fathomN_pairs_per_s=fathom_n_pps,
        ratio_pairs_1=fathom1_pps / baseline_pps,
        ratio_pairs_n=fathom_n_pps / baseline_pps,
        ratio_latency_1=baseline_latency / fathom1_p50,
        max_score_diff=max_diff,
        target=args.target,
        batching=batching,
        run_seconds=time.perf_counter() - started,
        quantize=args.quantize,
        noise=hogs,
        agreements=agreements,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if args.json:
        payload = {**asdict(report), "passed": report.passed, "scores_ok": report.scores_ok}
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if report.passed and report.scores_ok else 1


if __name__ == "__main__":
    sys.exit(main())
