"""Replaying a request-rate series against a service: open-loop Poisson arrivals whose rate follows it.

``rates_rps[i]`` is the arrival rate during ``[i * step_s, (i + 1) * step_s)`` of the replay; requests are
sent on kept-alive connections (`skyline.serving.loadgen.HttpConnection`, lean on CPU), a new one opened
when every open one is busy, up to ``max_connections`` (then a request waits for one, and its latency,
counted from the moment it was due, includes that wait: no coordinated omission). Used by the services
benchmark and the demo; every request ends as a status (or 599 when the connection broke).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from skyline.errors import ConfigError, UnavailableError
from skyline.serving.loadgen import HttpConnection


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
    if step_s <= 0 or any(r < 0 for r in rates_rps) or max_connections < 1:
        raise ConfigError("replay needs step_s > 0, rates ≥ 0 and at least one connection")
    sent_headers = {"content-type": "application/json", **(headers or {})}
    pool = _Pool(url, max_connections)
    log = ReplayLog()
    rng = random.Random(seed)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()

    async def one(due: float) -> None:
        conn = await pool.get()
        try:
            status, _ = await conn.request("POST", path, body, sent_headers)
        except UnavailableError:
            status = 599
        finally:
            pool.put(conn)
        log.due_s.append(due - start)
        log.latency_s.append(time.perf_counter() - due)
        log.status.append(status)

    for due in _arrivals(rates_rps, step_s, start, rng):
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks = [t for t in tasks if not t.done()] if len(tasks) > 1000 else tasks
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    await pool.close()
    return log


def _arrivals(rates_rps: Sequence[float], step_s: float, start: float, rng: random.Random) -> Iterator[float]:
    """Poisson arrival times (``perf_counter`` seconds) at ``rates_rps[i]`` during step ``i``."""
    for step, rate in enumerate(rates_rps):
        due, end = start + step * step_s, start + (step + 1) * step_s
        while rate > 0:
            due += rng.expovariate(rate)
            if due >= end:
                break
            yield due


class _Pool:
    """Idle connections; a new one while fewer than ``limit`` exist, else wait for one to come back."""

    def __init__(self, url: str, limit: int) -> None:
        self.url, self.limit = url, limit
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        self._all: list[HttpConnection] = []

    async def get(self) -> HttpConnection:
        if self._idle.empty() and len(self._all) < self.limit:
            conn = HttpConnection(self.url)
            self._all.append(conn)
            return conn
        return await self._idle.get()

    def put(self, conn: HttpConnection) -> None:
        self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
