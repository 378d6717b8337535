"""What a repeated search costs against its first time, with the default rerank (blocks and score cache).

Workload: the first `--queries` judged queries of a BEIR folder, against a collection already indexed
from it in `--data-dir`. Configuration: config/offline.toml (the int8 bench cross-encoder, depth 50,
budget 300 ms, blocks of 10) on a real `fathom serve` over HTTP. Each query is sent once (its first
time: its page's block scored, the next page's ahead within the budget left), then again (the
repeat); the baseline is the first time, measured in the same run. Printed: p50 of the client's wall
time and of the rerank stage for both, their ratio, and the score cache's hits and misses.

    .venv/bin/python bench/repeat_query.py --data-dir data --collection cranfield
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from service.testing.live_server import Served, fathom_serve

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FATHOM_SHARED_DIR", REPO.parent / "shared"))
CONFIG = REPO / "config" / "offline.toml"


def queries(folder: Path, count: int) -> list[str]:
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for _, line in zip(range(count), lines, strict=False)]


def timed_search(client: httpx.Client, served: Served, collection: str, text: str) -> tuple[float, float]:
    """(client wall ms, rerank stage ms) of one default search."""
    started = time.perf_counter()
    response = client.post(
        "/v1/search", json={"query": text, "collection": collection}, headers=served.headers
    )
    wall = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return wall, float(answer["timings"].get("rerank", 0.0))


def cache_counts(client: httpx.Client) -> dict[str, float]:
    counts = {}
    for row in client.get("/metrics").text.splitlines():
        for name in ("hits", "misses"):
            if row.startswith(f"fathom_rerank_cache_{name}_total "):
                counts[name] = float(row.split()[1])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--dataset", type=Path, default=None, help="the BEIR folder (default: shared data)")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    texts = queries(args.dataset or SHARED / "data" / args.collection, args.queries)
    env = {"FATHOM_DATA_DIR": str(args.data_dir.resolve())}
    with (
        fathom_serve(CONFIG, env=env, with_key=True) as served,
        httpx.Client(base_url=served.url, timeout=120) as client,
    ):
        timed_search(client, served, args.collection, "warm up the models")
        before = cache_counts(client)
        first = [timed_search(client, served, args.collection, text) for text in texts]
        middle = cache_counts(client)
        repeat = [timed_search(client, served, args.collection, text) for text in texts]
        after = cache_counts(client)
    for label, index in (("wall", 0), ("rerank", 1)):
        once = statistics.median(sample[index] for sample in first)
        again = statistics.median(sample[index] for sample in repeat)
        print(f"{label:7} p50 first {once:8.1f} ms   repeat {again:8.1f} ms   ratio {again / once:.3f}")
    passes = (("first", before, middle), ("repeat", middle, after))
    for label, start, end in passes:
        hits, misses = end["hits"] - start["hits"], end["misses"] - start["misses"]
        print(f"score cache, {label} pass of {len(texts)} queries: {hits:.0f} hits, {misses:.0f} misses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
