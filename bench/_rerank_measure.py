"""Measuring the rerank server: timed requests, concurrent clients, agreement with fp32, a noisy neighbour."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from _rerank_workload import MODEL_ID, Baseline, Workload
from _stats import spearman, top_overlap

from service.testing.live_server import Served, SetupError


def server_metrics(server: Served) -> dict[str, float]:
    """Batching counters from /metrics: ONNX runs, pairs, and requests per batch."""
    wanted = {
        "fathom_rerank_batch_pairs_count": "batches",
        "fathom_rerank_batch_pairs_sum": "batch_pairs",
        "fathom_rerank_cycle_requests_sum": "batch_requests",
    }
    found: dict[str, float] = {}
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted and f'model="{MODEL_ID}"' in line:
            found[wanted[name]] = float(line.rsplit(" ", 1)[1])
    return found


def rerank_request(client: httpx.Client, workload: Workload) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post("/v1/rerank", json={"query": workload.query, "documents": workload.documents})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SetupError(f"POST /v1/rerank answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return elapsed, body


def scores_by_index(body: dict[str, Any], count: int) -> np.ndarray:
    scores = np.full(count, np.nan)
    for result in body["results"]:
        scores[int(result["index"])] = float(result["relevance_score"])
    return scores


def client_for(server: Served) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=httpx.Timeout(600.0, connect=10.0),
    )


def concurrent_run(
    server: Served, workload: Workload, clients: int, per_client: int
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
        raise SetupError(f"a concurrent client failed: {errors[0]!r}")
    return wall, latencies


@dataclass(frozen=True, slots=True)
class Burst:
    """Clients that each sent one request at the same moment: what each got back, and when."""

    answered: list[float]  # seconds to a 200
    refused: list[float]  # seconds to a 429 (refused at admission, or a full queue)
    failed: list[tuple[int, float]]  # any other status, with its seconds (a 503 at the time limit)
    retry_after: list[int]  # the refusals' Retry-After

    def summary(self) -> str:
        def spread(times: list[float]) -> str:
            return f"{min(times):.2f}-{max(times):.2f} s" if times else "-"

        failed = ", ".join(f"{status} after {seconds:.1f} s" for status, seconds in self.failed) or "none"
        return (
            f"{len(self.answered)} answered ({spread(self.answered)}), {len(self.refused)} refused with 429 "
            f"({spread(self.refused)}, Retry-After {self.retry_after or '-'}), other: {failed}"
        )


def burst(server: Served, workload: Workload, clients: int) -> Burst:
    """`clients` requests of the whole workload sent at once, at the server's own time limit: the case
    where most of them cannot be answered in time and should hear so at once."""
    with client_for(server) as client:  # the server measures its cost per token before the burst
        warm = {"query": workload.query, "documents": workload.documents[:8]}
        client.post("/v1/rerank", json=warm).raise_for_status()
    outcomes: list[tuple[int, float, str | None]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    body = {"query": workload.query, "documents": workload.documents}

    def one() -> None:
        with client_for(server) as client:
            barrier.wait()
            started = time.perf_counter()
            response = client.post("/v1/rerank", json=body)
            with lock:
                outcomes.append(
                    (response.status_code, time.perf_counter() - started, response.headers.get("retry-after"))
                )

    threads = [threading.Thread(target=one, name=f"burst-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Burst(
        answered=[seconds for status, seconds, _ in outcomes if status == 200],
        refused=[seconds for status, seconds, _ in outcomes if status == 429],
        failed=[(status, seconds) for status, seconds, _ in outcomes if status not in (200, 429)],
        retry_after=sorted(int(after) for status, _, after in outcomes if status == 429 and after),
    )


def warm_up_and_compare(baseline: Baseline, server: Served, workload: Workload, warmup: int) -> float:
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


def agreement(
    baseline: Baseline, server: Served, workload: Workload, queries: list[tuple[str, str]]
) -> list[Agreement]:
    """Per query: Spearman of the scores and the overlap of the top 10, Fathom against fp32 fastembed."""
    found = []
    with client_for(server) as client:
        for query_id, text in queries:
            asked = Workload(text, query_id, workload.documents, workload.document_ids)
            expected = baseline.logits(text, workload.documents)
            _, body = rerank_request(client, asked)
            scores = scores_by_index(body, len(workload.documents))
            found.append(Agreement(query_id, spearman(expected, scores), top_overlap(expected, scores)))
    return found


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
    baseline: Baseline, servers: list[Served], workload: Workload, rounds: int
) -> tuple[list[float], list[list[float]]]:
    """Baseline call, then one request to each server, `rounds` times: drift in machine speed hits all."""
    baseline_latencies: list[float] = []
    fathom_latencies: list[list[float]] = [[] for _ in servers]
    clients = [client_for(server) for server in servers]
    try:
        for round_no in range(rounds):
            started = time.perf_counter()
            baseline.logits(workload.query, workload.documents)
            baseline_latencies.append(time.perf_counter() - started)
            line = f"  round {round_no + 1}/{rounds}: baseline {baseline_latencies[-1] * 1000:.0f} ms"
            for client, latencies in zip(clients, fathom_latencies, strict=True):
                elapsed, _ = rerank_request(client, workload)
                latencies.append(elapsed)
                line += f", Fathom {elapsed * 1000:.0f} ms"
            print(line)
    finally:
        for client in clients:
            client.close()
    return baseline_latencies, fathom_latencies
