"""Prometheus collectors: requests by route and status, latency, rerank batching, queue depth, search.

The runtime owns one Metrics; the HTTP middleware (service/api/metrics.py) and the rerank engines feed it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """One registry per app, so several apps (tests) never collide in the global one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fathom_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fathom_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_pairs = Histogram(
            "fathom_rerank_batch_pairs",
            "Pairs per ONNX run",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.cycle_requests = Histogram(
            "fathom_rerank_cycle_requests",
            "Requests sharing one batching cycle",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "fathom_rerank_queue_pairs", "Pairs waiting for inference", ["model"], registry=self.registry
        )
        # Read from the engine at each scrape, as the queue is: the engine counts, this only shows it.
        self.skipped_pairs = Gauge(
            "fathom_rerank_skipped_pairs",
            "Pairs dropped unscored since start: their request was cancelled or ran out of time",
            ["model"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "fathom_search_degraded",
            "Searches answered without a failed stage",
            ["stage"],
            registry=self.registry,
        )

        self.rerank_cache_hits = Counter(
            "fathom_rerank_cache_hits",
            "Search rerank pairs answered from the score cache",
            registry=self.registry,
        )
        self.rerank_cache_misses = Counter(
            "fathom_rerank_cache_misses",
            "Search rerank pairs the score cache did not hold (sent to the reranker)",
            registry=self.registry,
        )
        self.searches_cancelled = Counter(
            "fathom_search_cancelled",
            "Searches stopped because their client disconnected before the answer was ready",
            registry=self.registry,
        )
        self.reranks_cancelled = Counter(
            "fathom_rerank_cancelled",
            "Rerank requests stopped because their client disconnected before the answer was ready",
            registry=self.registry,
        )
        # service/auth/deferred_usage.py: usage the key store had no room for.
        self.usage_unwritten = Gauge(
            "fathom_key_usage_unwritten_units",
            "Search units charged in memory while the key store's disk is full, not written yet",
            registry=self.registry,
        )
        self.usage_deferred = Counter(
            "fathom_key_usage_deferred_units",
            "Search units that could not be written to the key store at once (its disk was full)",
            registry=self.registry,
        )

    def batch_observer(self, model: str) -> Callable[[int, int], None]:
        """A callback for the rerank engine: pairs in a batch, requests in its cycle."""

        def observe(pairs: int, requests: int) -> None:
            self.batch_pairs.labels(model).observe(pairs)
            self.cycle_requests.labels(model).observe(requests)

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
