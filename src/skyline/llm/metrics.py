"""Prometheus metrics of the LLM server (one registry per app, like `skyline.serving.metrics`).

Latency histograms are observed per request as its outputs reach the event loop: time to first token,
inter-token latency (the gap between consecutive outputs carrying tokens) and end-to-end latency, all
in seconds. Engine-wide figures (running and waiting requests, KV blocks, prefix-cache hits,
preemptions, prompt and generated tokens) are read from the engine's latest `EngineStats` at scrape
time, so they are never out of step with the engine. Names follow vLLM's where one exists, under the
``skyline_llm_`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyline.llm.async_engine import RequestStream
from skyline.llm.engine import EngineStats

__all__ = ["LLMMetrics"]

_TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS_S = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_E2E_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)


class _EngineCollector(Collector):
    """Engine-wide gauges and counters from the latest `EngineStats`, read at scrape time."""

    def __init__(self, model: str, stats: Callable[[], EngineStats], waiting: Callable[[], int]) -> None:
        self._model, self._stats, self._waiting = model, stats, waiting

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        gauges = (
            ("num_requests_running", "Requests in the running batch", s.running),
            ("num_requests_waiting", "Requests accepted and waiting for the running batch", self._waiting()),
            ("kv_blocks_used", "KV-cache blocks held by requests", s.kv_blocks_used),
            ("kv_blocks_total", "KV-cache blocks in all", s.kv_blocks_total),
            ("kv_cache_usage_ratio", "Fraction of KV-cache blocks held by requests", s.kv_cache_usage),
            ("prefix_cache_hit_rate", "Prompt tokens found in the prefix cache / looked up", s.prefix_cache_hit_rate),
        )  # fmt: skip
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(f"skyline_llm_{name}", doc, labels=["model_name"])
            gauge.add_metric([self._model], float(value))
            yield gauge
        counters = (
            ("prompt_tokens", "Prompt tokens prefilled (recomputation after preemption included)", s.prompt_tokens_total),
            ("generation_tokens", "Tokens generated", s.generated_tokens_total),
            ("prefix_cache_queries", "Prompt tokens looked up in the prefix cache", s.prefix_cache_query_tokens),
            ("prefix_cache_hits", "Prompt tokens found in the prefix cache", s.prefix_cache_hit_tokens),
            ("preemptions", "Requests preempted (KV blocks ran out; recomputed later)", s.preemptions),
        )  # fmt: skip
        for name, doc, value in counters:
            counter = CounterMetricFamily(f"skyline_llm_{name}", doc, labels=["model_name"])
            counter.add_metric([self._model], float(value))
            yield counter


class LLMMetrics:
    """All metrics of one LLM server, in their own registry."""

    def __init__(self, model: str, stats: Callable[[], EngineStats], waiting: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r, labels = self.registry, ("model_name",)
        self._ttft = Histogram(
            "skyline_llm_time_to_first_token_seconds", "Time from arrival to the first generated token",
            labels, buckets=_TTFT_BUCKETS_S, registry=r,
        ).labels(model)  # fmt: skip
        self._itl = Histogram(
            "skyline_llm_inter_token_latency_seconds", "Time between consecutive outputs of a request",
            labels, buckets=_ITL_BUCKETS_S, registry=r,
        ).labels(model)  # fmt: skip
        self._e2e = Histogram(
            "skyline_llm_e2e_request_latency_seconds", "Time from arrival to the last output of a request",
            labels, buckets=_E2E_BUCKETS_S, registry=r,
        ).labels(model)  # fmt: skip
        self._requests = Counter(
            "skyline_llm_requests",
            "Requests finished, by finish reason",
            (*labels, "finish_reason"),
            registry=r,
        )
        self._model = model
        r.register(_EngineCollector(model, stats, waiting))

    def observe(self, stream: RequestStream, finish_reason: str) -> None:
        """Record a finished request (the `AsyncEngine` ``on_finish`` hook)."""
        timing = stream.timing
        if timing.first_token_s is not None:
            self._ttft.observe(timing.first_token_s - timing.submitted_s)
        for gap_s in timing.token_gaps_s:
            self._itl.observe(gap_s)
        if timing.last_token_s is not None:
            self._e2e.observe(timing.last_token_s - timing.submitted_s)
        self._requests.labels(self._model, finish_reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
