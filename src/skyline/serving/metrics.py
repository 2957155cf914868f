"""Prometheus metrics of the inference server (one registry per app, so several apps can share a process).

Counts follow Triton: requests (one per HTTP call), inferences (rows computed) and executions (batches
run), so inferences / executions is the realized batch size. Histograms: time waiting in the queue,
compute time of the batch a request rode in, and total request latency, all in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from skyline.serving.batching import BatchStats

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """The metric children of one model version (label lookups done once, not per request)."""

    success: Counter
    failure: Counter
    inferences: Counter
    executions: Counter
    queue_s: Histogram
    compute_s: Histogram
    request_s: Histogram
    batch_rows: Histogram
    queue_depth: Gauge

    def observe_batch(self, stats: BatchStats) -> None:
        self.executions.inc()
        self.inferences.inc(stats.rows)
        self.batch_rows.observe(stats.rows)
        for wait_s in stats.queue_s:
            self.queue_s.observe(wait_s)
            self.compute_s.observe(stats.compute_s)


class ServingMetrics:
    """All metrics of one server, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        r = self.registry
        self._requests = Counter(
            "skyline_inference_requests", "Inference requests answered", (*labels, "outcome"), registry=r
        )
        self._inferences = Counter("skyline_inference_count", "Rows (items) inferred", labels, registry=r)
        self._executions = Counter("skyline_execution_count", "Batches executed", labels, registry=r)
        self._queue = Histogram(
            "skyline_queue_duration_seconds", "Time a request waited for its batch", labels,
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self._compute = Histogram(
            "skyline_compute_duration_seconds", "Compute time of the batch a request rode in", labels,
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self._request = Histogram(
            "skyline_request_duration_seconds", "Server-side latency of an inference request", labels,
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self._batch = Histogram(
            "skyline_batch_size", "Rows per executed batch (the realized batch size)", labels,
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self._depth = Gauge("skyline_queue_depth", "Requests waiting for a batch", labels, registry=r)

    def for_model(self, name: str, version: int) -> ModelMetrics:
        key = (name, str(version))
        return ModelMetrics(
            success=self._requests.labels(*key, "success"),
            failure=self._requests.labels(*key, "failure"),
            inferences=self._inferences.labels(*key),
            executions=self._executions.labels(*key),
            queue_s=self._queue.labels(*key),
            compute_s=self._compute.labels(*key),
            request_s=self._request.labels(*key),
            batch_rows=self._batch.labels(*key),
            queue_depth=self._depth.labels(*key),
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
