"""Prometheus metrics: requests by route and status, latency, rerank batching, queue depth."""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
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
        self.degraded = Counter(
            "fathom_search_degraded",
            "Searches answered without a failed stage",
            ["stage"],
            registry=self.registry,
        )

        self.searches_cancelled = Counter(
            "fathom_search_cancelled",
            "Searches stopped because their client disconnected before the answer was ready",
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


def metrics_middleware(metrics: Metrics) -> Callable[[ASGIApp], ASGIApp]:
    """Times every HTTP request and counts it under its route template, not its raw path."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_and_record(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_and_record)
            finally:
                route = str(scope.get("path_template") or "unmatched")
                metrics.requests.labels(scope["method"], route, str(status)).inc()
                metrics.latency.labels(route).observe(time.perf_counter() - started)

        return wrapped

    return middleware
