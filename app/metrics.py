"""Prometheus metrics, one registry per app so that several apps (tests) never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
