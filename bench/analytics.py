"""What search analytics cost a search, and what a kill -9 of the server loses of them.

Workload: the first `--documents` Cranfield documents (300) indexed once into the embedded stores
(Tantivy + Qdrant local, MiniLM, config/offline.toml), its 225 queries cycled, rerank off (the stage
analytics could hide behind).

- Cost: one runtime (the same stores, models and key store) served by two apps in this process, one
  recording analytics and one not, called through their ASGI interfaces with a key; requests go out
  at `--rate` a second in all (200), alternating between the two apps with the same query, for
  `--seconds`. Prints each side's p50 and p95 as the client saw them, and the ratio (target: p50 within
  2%). In-process, so HTTP costs nothing and the recorder's share is as large as it can appear.
- Loss: the real `fathom serve` (analytics flushed every second, as by default) takes `--kill-searches`
  searches, then /metrics is read (events still buffered) and the process killed with SIGKILL. The
  searches the store holds afterwards are counted against those answered: at most the buffer is lost,
  and the buffered gauge read just before the kill says how much.

    .venv/bin/python bench/analytics.py
    .venv/bin/python bench/analytics.py --rate 100 --seconds 20 --data-dir /tmp/analytics-bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _stats import load, percentile

from service.testing.live_server import fathom_serve

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FATHOM_SHARED_DIR", REPO.parent / "shared"))
CONFIG = REPO / "config" / "offline.toml"
COLLECTION = "cranfield"
P50_TARGET_RATIO = 1.02
sys.path.insert(0, str(REPO))


def environment(data_dir: Path) -> dict[str, str]:
    """FATHOM_* variables over config/offline.toml: this data dir, rerank off, a flush every second."""
    return {
        "FATHOM_DATA_DIR": str(data_dir),
        "FATHOM_SEARCH__RERANK__ENABLED": "false",
        "FATHOM_ANALYTICS__FLUSH_SECONDS": "1.0",
    }


def settings_for(data_dir: Path) -> Any:
    from service.settings import load_settings

    return load_settings(CONFIG, environ=environment(data_dir))


def read_queries() -> list[str]:
    path = SHARED / "data" / COLLECTION / "queries.jsonl"
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]


async def ensure_indexed(settings: Any, documents: int) -> None:
    """Index the first `documents` Cranfield documents, as `fathom index` does; once per data dir."""
    from indexers.run import index_records
    from indexers.sources import beir_corpus, read_jsonl
    from service.ingest.documents import Document
    from service.runtime import open_writer

    records = [r for r in read_jsonl(beir_corpus(SHARED / "data" / COLLECTION)) if isinstance(r, Document)]
    async with open_writer(settings) as writer:
        print(f"indexing {documents} documents (unchanged ones are skipped)...", file=sys.stderr)
        await index_records(writer, COLLECTION, records[:documents])


async def cost(settings: Any, queries: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """Client-side seconds per search of the recording app and the other, interleaved on one runtime."""
    from msgspec import structs

    from service.app import create_app
    from service.runtime import open_runtime

    quiet = structs.replace(settings, analytics=structs.replace(settings.analytics, enabled=False))
    async with open_runtime(settings, models=False) as runtime:
        key = runtime.key_store.create(f"bench-{time.time_ns()}")
        headers = {"Authorization": f"Bearer {key}"}
        apps = {"on": create_app(settings, runtime), "off": create_app(quiet, runtime)}
        async with apps["on"].lifespan(), apps["off"].lifespan():
            clients = {
                name: httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://fathom", timeout=60
                )
                for name, app in apps.items()
            }
            latencies: dict[str, list[float]] = {"on": [], "off": []}

            async def one(name: str, query: str) -> None:
                started = time.perf_counter()
                body = {"query": query, "collection": COLLECTION, "top_k": 10}
                response = await clients[name].post("/v1/search", json=body, headers=headers)
                response.raise_for_status()
                latencies[name].append(time.perf_counter() - started)

            for query in queries:  # warm the embedding cache and both apps alike
                await one("on", query)
                await one("off", query)
            latencies = {"on": [], "off": []}
            total = int(rate * seconds)
            began = time.perf_counter()
            tasks = []
            for number in range(total):
                # Open loop: each request leaves at its time, whether the earlier ones are done or not.
                await asyncio.sleep(max(0.0, began + number / rate - time.perf_counter()))
                name = "on" if number % 2 == 0 else "off"
                tasks.append(asyncio.create_task(one(name, queries[(number // 2) % len(queries)])))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
            written = runtime.metrics.registry.get_sample_value("fathom_analytics_events_written_total")
            dropped = runtime.metrics.registry.get_sample_value("fathom_analytics_events_dropped_total")
            for client in clients.values():
                await client.aclose()
    return {"latencies": latencies, "rate": total / elapsed, "written": written, "dropped": dropped}


def kill_loss(data_dir: Path, queries: list[str], searches: int) -> dict[str, Any]:
    """Searches answered by `fathom serve`, the buffered gauge just before a kill -9, and what was stored."""
    from service.analytics.store import SqliteEventStore

    (data_dir / "analytics.sqlite3").unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        (data_dir / f"analytics.sqlite3{suffix}").unlink(missing_ok=True)
    with fathom_serve(CONFIG, env=environment(data_dir), with_key=True) as served:

        async def send() -> int:
            async with httpx.AsyncClient(base_url=served.url, headers=served.headers, timeout=60) as client:
                gate = asyncio.Semaphore(8)

                async def one(query: str) -> int:
                    async with gate:
                        body = {"query": query, "collection": COLLECTION, "top_k": 10}
                        return int((await client.post("/v1/search", json=body)).status_code == 200)

                return sum(await asyncio.gather(*(one(queries[n % len(queries)]) for n in range(searches))))

        answered = asyncio.run(send())
        metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait()
    buffered = gauge(metrics, "fathom_analytics_events_buffered")
    store = SqliteEventStore(data_dir / "analytics.sqlite3")
    try:
        stored = len(store.searches(COLLECTION, 0))
    finally:
        store.close()
    return {
        "answered": answered,
        "stored": stored,
        "lost": answered - stored,
        "buffered_before_kill": buffered,
    }


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise LookupError(f"{name} is not in /metrics")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="searches a second, both apps together")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--kill-searches", type=int, default=400)
    parser.add_argument(
        "--data-dir", type=Path, help="reuse an index between runs (default: a temporary one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fathom-analytics-bench-") as scratch:
        data_dir = args.data_dir or Path(scratch)
        settings = settings_for(data_dir)
        queries = read_queries()
        asyncio.run(ensure_indexed(settings, args.documents))
        print(f"before: {load()}")
        run = asyncio.run(cost(settings, queries, args.rate, args.seconds))
        print(f"after cost: {load()}")
        loss = kill_loss(data_dir, queries, args.kill_searches)
        print(f"after kill: {load()}")
    on, off = run["latencies"]["on"], run["latencies"]["off"]
    p50_on, p50_off = percentile(on, 50) * 1000, percentile(off, 50) * 1000
    ratio = p50_on / p50_off
    # Sent at the asked rate; answered as fast as the machine could, which on a busy one is slower.
    pace = f"{args.rate:.0f}/s sent, {run['rate']:.1f}/s answered"
    print(f"\nrecording cost, {len(on) + len(off)} searches ({pace}):")
    for name, values in (("on ", on), ("off", off)):
        p50, p95 = percentile(values, 50) * 1000, percentile(values, 95) * 1000
        print(f"  recording {name}: p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  ({len(values)} searches)")
    verdict = "within" if ratio <= P50_TARGET_RATIO else "OVER"
    print(f"  p50 ratio on/off: {ratio:.3f} ({verdict} the {P50_TARGET_RATIO:.2f} target)")
    print(f"  events written {run['written']:.0f}, dropped {run['dropped']:.0f}")
    print(f"\nkill -9 after {loss['answered']} answered searches (flush every 1 s):")
    print(
        f"  stored {loss['stored']}, lost {loss['lost']};"
        f" the buffered gauge read just before the kill: {loss['buffered_before_kill']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
