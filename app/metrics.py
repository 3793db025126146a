"""Prometheus metrics, one registry per app so that several apps (tests) never share counters."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from app.status import EngineStatus

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "search_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "search_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.encode_latency = Histogram(
            "search_encode_duration_seconds",
            "time of one model call (a dynamic batch)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_documents = Gauge("search_index_documents", "documents in the loaded index", registry=self.registry)
        self.ready = Gauge("search_ready", "1 once model and index are loaded", registry=self.registry)
        self.batch_texts = Histogram(
            "search_encode_batch_texts",
            "texts per model call (dynamic batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.queue_depth = Gauge("search_encode_queue_depth", "requests waiting to be encoded", registry=self.registry)
        self.writes = Counter("search_document_writes", "acknowledged document writes", ["op"], registry=self.registry)
        self.cache_hits = Gauge(
            "search_query_cache_hits", "query embeddings served from the cache", registry=self.registry
        )
        self.cache_misses = Gauge("search_query_cache_misses", "query embeddings computed", registry=self.registry)
        self.snapshot_failures = Gauge(
            "search_snapshot_failures",
            "failed background snapshots since start (the writes stay in the log)",
            registry=self.registry,
        )

    def refresh(self, status: EngineStatus) -> None:
        """Gauges that mirror engine state: set when /metrics is scraped, not on every request."""
        self.ready.set(1 if status.ready else 0)
        if status.ready:
            self.index_documents.set(status.index_size or 0)
            self.queue_depth.set(status.queue_depth)
            self.cache_hits.set(status.cache_hits)
            self.cache_misses.set(status.cache_misses)
            self.snapshot_failures.set(status.snapshot_failures)


class RecordMetrics:
    """Counts and times requests by route template and status. Plain ASGI: Starlette's BaseHTTPMiddleware would
    add a task group and a stream per request (measured: a large share of the per-request CPU under load)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
