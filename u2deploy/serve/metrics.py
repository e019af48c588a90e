"""Prometheus metrics of `u2deploy serve`, in a registry of their own so several apps can live in one process."""

from __future__ import annotations

from typing import Any

__all__ = ["ServeMetrics", "STAGES"]

#: stages of one request, in order; `queue` is the wait for a batch, `total` the whole request
STAGES = ("decode", "preprocess", "queue", "infer", "postprocess", "encode", "total")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """Latency by stage, queue depth, batch sizes, requests by status and errors by kind.

    Args:
        max_batch: largest batch, for the batch-size histogram's buckets.
        depth: callable giving the current queue depth (read at scrape time).
    """

    def __init__(self, max_batch: int, depth: Any) -> None:
        from .._deps import require

        require("prometheus_client", "u2deploy serve's /metrics")
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.latency = Histogram("u2deploy_stage_seconds", "Time spent per request stage", ["stage"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("u2deploy_batch_size", "Images per inference", registry=self.registry,
                               buckets=tuple(float(b) for b in range(1, max_batch + 1)))
        self.requests = Counter("u2deploy_requests", "Requests by route and status code", ["route", "status"],
                                registry=self.registry)
        self.errors = Counter("u2deploy_errors", "Failed requests by kind", ["kind"], registry=self.registry)
        self.queue = Gauge("u2deploy_queue_depth", "Images admitted and not yet answered", registry=self.registry)
        self.queue.set_function(lambda: float(depth()))

    def observe(self, stage: str, value: float) -> None:
        """The batcher's observer: stage timings in seconds, and ("batch", size)."""
        if stage == "batch":
            self.batch.observe(value)
        else:
            self.latency.labels(stage).observe(value)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
