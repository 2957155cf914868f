"""Replaying a request-rate series against a service: open-loop Poisson arrivals whose rate follows it.

``rates_rps[i]`` is the arrival rate during ``[i * step_s, (i + 1) * step_s)`` of the replay; requests are
sent by `skyline.serving.loadgen.open_loop` on kept-alive connections (lean on CPU), a new one opened
when every open one is busy, up to ``max_connections`` (then a request waits for one, and its latency,
counted from the moment it was due, includes that wait: no coordinated omission). Used by the services
benchmark and the demo; every request ends as a status (or 599 when the connection broke).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from skyline.serving.loadgen import ConnectionPool, open_loop


@dataclass(slots=True)
class ReplayLog:
    """Each request: when it was due (seconds into the replay), its latency (seconds) and status."""

    due_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)

    def summary(self, *, slo_s: float) -> dict[str, float | int | dict[str, int]]:
        """Requests, failures (not 200), SLO attainment (200 within ``slo_s``), latency percentiles."""
        latency = np.asarray(self.latency_s)
        ok = np.asarray(self.status) == 200
        within = ok & (latency <= slo_s)
        return {
            "requests": len(self.status),
            "failed": int((~ok).sum()),
            "slo_attainment": float(within.mean()) if len(within) else 1.0,
            "p50_ms": float(np.percentile(latency, 50) * 1000) if len(latency) else 0.0,
            "p99_ms": float(np.percentile(latency, 99) * 1000) if len(latency) else 0.0,
            "statuses": {str(k): v for k, v in sorted(Counter(self.status).items())},
        }


async def replay(
    url: str,
    *,
    path: str,
    body: bytes,
    rates_rps: Sequence[float],
    step_s: float,
    headers: dict[str, str] | None = None,
    max_connections: int = 256,
    seed: int = 0,
) -> ReplayLog:
    """Send ``body`` to ``url + path`` at the rates of ``rates_rps`` (one per ``step_s``); see the module."""
    pool = ConnectionPool(url, max_connections)
    try:
        sent = await open_loop(
            pool,
            path=path,
            body=body,
            headers={"content-type": "application/json", **(headers or {})},
            rates_rps=rates_rps,
            step_s=step_s,
            seed=seed,
        )
    finally:
        await pool.close()
    log = ReplayLog()
    for due_s, latency_s, status in sorted(sent):
        log.due_s.append(due_s)
        log.latency_s.append(latency_s)
        log.status.append(status)
    return log
