"""Sizing figures for docs/deploy.md: CPU per query of each process, bytes per chunk in each store.

Indexes the first --docs Cranfield documents through `fathom index` into an Elasticsearch and a Qdrant
server, then sends --queries of its queries one at a time to a real `fathom serve` (rerank off, then
rerank depth 20 with the bench cross-encoder) and reads the CPU time each process used from /proc:
Fathom (embedding, fusion, reranking, HTTP), Elasticsearch and Qdrant.

    .venv/bin/python bench/sizing.py --es-url http://127.0.0.1:9200 --es-pid PID \
        --qdrant-url http://127.0.0.1:6333 --qdrant-pid PID --qdrant-storage /tmp/fathom-qdrant-6333/storage
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service.testing.live_server import fathom_serve

REPO = Path(__file__).resolve().parent.parent

SHARED = Path(os.environ.get("FATHOM_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data" / "cranfield"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def config(data_dir: Path, args: argparse.Namespace) -> str:
    models = SHARED / "models"
    return f"""
data_dir = "{data_dir}"
[auth]
enabled = false
[embedding]
path = "{models / "all-MiniLM-L6-v2"}"
[rerank]
default_model = "bench"
[rerank.models."BAAI/bge-reranker-v2-m3"]
enabled = false
[rerank.models."bench"]
path = "{models / "cross-encoder-minilm-l6-bench"}"
[search]
lexical = "elasticsearch"
[elasticsearch]
url = "{args.es_url}"
index_prefix = "sizing-"
[qdrant]
url = "{args.qdrant_url}"
prefer_grpc = true
grpc_port = {int(args.qdrant_url.rsplit(":", 1)[1]) + 1}
collection_prefix = "sizing-"
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--es-url", "--qdrant-url", "--qdrant-storage"):
        parser.add_argument(name, required=True)
    parser.add_argument("--es-pid", type=int, required=True)
    parser.add_argument("--qdrant-pid", type=int, required=True)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()][: args.queries]
    figures: dict[str, object] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = root / "fathom.toml"
        cfg.write_text(config(root / "data", args))
        fathom = [sys.executable, "-m", "service.cli", "--config", str(cfg)]
        corpus = root / "corpus.jsonl"
        corpus.write_text("".join((DATA / "corpus.jsonl").open().readlines()[: args.docs]))
        started = time.monotonic()
        subprocess.run([*fathom, "index", "--collection", "cran", str(corpus)], check=True)
        figures[f"index_seconds_{args.docs}_docs"] = round(time.monotonic() - started, 1)
        es_stats = httpx.get(f"{args.es_url}/sizing-cran/_stats/store,docs").json()["_all"]["primaries"]
        chunks = es_stats["docs"]["count"]
        figures["chunks"] = chunks
        figures["es_bytes_per_chunk"] = round(es_stats["store"]["size_in_bytes"] / chunks)
        qdrant_dir = Path(args.qdrant_storage) / "collections" / "sizing-cran"
        qdrant_bytes = sum(f.stat().st_size for f in qdrant_dir.rglob("*") if f.is_file())
        figures["qdrant_disk_bytes_per_chunk"] = round(qdrant_bytes / chunks)
        with fathom_serve(cfg) as served:
            url, server_pid = served.url, served.process.pid
            for label, rerank in (("no_rerank", {"enabled": False}), ("rerank_depth20", {"depth": 20})):
                body = {"collection": "cran", "top_k": 10, "rerank": rerank}
                httpx.post(f"{url}/v1/search", json={**body, "query": "warm up"}, timeout=60)
                before = {p: cpu_seconds(p) for p in (server_pid, args.es_pid, args.qdrant_pid)}
                wall = time.monotonic()
                for query in queries:
                    response = httpx.post(f"{url}/v1/search", json={**body, "query": query}, timeout=60)
                    assert response.status_code == 200, response.text
                wall = time.monotonic() - wall
                after = {p: cpu_seconds(p) for p in before}
                per_query = {p: (after[p] - before[p]) / len(queries) * 1000 for p in before}
                figures[label] = {
                    "fathom_cpu_ms": round(per_query[server_pid], 2),
                    "elasticsearch_cpu_ms": round(per_query[args.es_pid], 2),
                    "qdrant_cpu_ms": round(per_query[args.qdrant_pid], 2),
                    "wall_ms": round(wall / len(queries) * 1000, 1),
                }
        httpx.delete(f"{args.es_url}/sizing-cran")
        httpx.delete(f"{args.qdrant_url}/collections/sizing-cran")
    figures["load_after"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
