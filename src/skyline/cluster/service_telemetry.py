"""`ServiceStats`: what the gateway sees of one service, taken as a `TelemetryWindow` every interval.

Counted per window: requests arrived (the demand: a request waiting at the gateway counts when it
arrives, not when a replica finally answers it, so an overloaded service's demand is not capped at its
capacity), requests answered, errors (5xx, whoever answered), rejections (429 from the
gateway's queue), latency percentiles, and concurrency as its time-weighted mean (Knative's "average
concurrency") and peak. Windows go to the control plane's metrics history (`service_metrics`), where
the autoscaler reads demand from them; running totals feed ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Latencies kept per window at most (a uniform sample beyond: percentiles stay unbiased, memory bounded).
MAX_SAMPLES = 50_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryWindow:
    """One service over ``window_s`` seconds ending at ``at_s`` (wall clock)."""

    service: str
    at_s: float
    window_s: float
    requests: int = 0  # arrived in the window
    answered: int = 0
    errors: int = 0
    rejected: int = 0
    within_slo: int | None = None  # requests answered (not 5xx, not 429) within the service's p99 target
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    concurrency: float = 0.0
    peak_concurrency: int = 0
    queued: int = 0
    replica_outstanding: dict[str, int] = field(default_factory=dict)

    @property
    def rate_rps(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["rate_rps"] = self.rate_rps
        return out


class ServiceStats:
    """Counters of one service since the last `take`; ``begin``/``end`` bracket every request."""

    def __init__(self, now_s: float, *, slo_ms: float | None = None) -> None:
        self.slo_ms = slo_ms  # the service's p99 target: requests within it are counted exactly
        self.in_flight = 0
        self.requests_total = 0
        self.errors_total = 0
        self.rejected_total = 0
        self._reset(now_s)
        self._rng = np.random.default_rng(0)

    def _reset(self, now_s: float) -> None:
        self._started = self._last = now_s
        self._area = 0.0
        self._peak = self.in_flight
        self._arrived = self._requests = self._errors = self._rejected = self._within = 0
        self._latencies: list[float] = []

    def _advance(self, now_s: float) -> None:
        self._area += self.in_flight * (now_s - self._last)
        self._last = now_s

    def begin(self, now_s: float) -> None:
        self._advance(now_s)
        self.in_flight += 1
        self._arrived += 1
        self._peak = max(self._peak, self.in_flight)

    def end(self, now_s: float, status: int, latency_s: float) -> None:
        self._advance(now_s)
        self.in_flight -= 1
        self._requests += 1
        self.requests_total += 1
        if status >= 500:
            self._errors += 1
            self.errors_total += 1
        elif status == 429:
            self._rejected += 1
            self.rejected_total += 1
        elif self.slo_ms is not None and latency_s * 1000.0 <= self.slo_ms:
            self._within += 1
        if len(self._latencies) < MAX_SAMPLES:
            self._latencies.append(latency_s)
        else:  # reservoir sampling: every latency of the window kept with the same probability
            slot = int(self._rng.integers(0, self._requests))
            if slot < MAX_SAMPLES:
                self._latencies[slot] = latency_s

    def take(self, service: str, *, now_s: float, wall_s: float, **extra: Any) -> TelemetryWindow:
        """The window since the last take (``now_s`` on the gateway's clock, ``wall_s`` to stamp it)."""
        self._advance(now_s)
        span = max(now_s - self._started, 1e-9)
        p50 = p90 = p99 = mean = None
        if self._latencies:
            ms = np.asarray(self._latencies) * 1000.0
            p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
            mean = float(ms.mean())
        window = TelemetryWindow(
            service=service, at_s=wall_s, window_s=span, requests=self._arrived, answered=self._requests,
            errors=self._errors,
            rejected=self._rejected, within_slo=None if self.slo_ms is None else self._within,
            p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=mean, concurrency=self._area / span,
            peak_concurrency=self._peak, **extra,
        )  # fmt: skip
        self._reset(now_s)
        return window
