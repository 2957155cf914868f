"""What the agent measured while serving each version of its model: the evidence a rollout is judged on.

Per version: requests answered and failed, answers marked degraded, the median latency of the last
``window`` answers (ms per input), and labelled records answered and answered right. Counts are kept
since the agent started; a rollout compares the new version's rates with the previous version's.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Counts:
    answered: int = 0
    errors: int = 0
    degraded: int = 0
    labelled: int = 0
    correct: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))


class VersionStats:
    """Thread-safe counters per version (``None``: before any version was installed)."""

    def __init__(self) -> None:
        self._counts: dict[int | None, _Counts] = {}
        self._lock = threading.Lock()

    def _of(self, version: int | None) -> _Counts:
        return self._counts.setdefault(version, _Counts())

    def answered(self, version: int | None, rows: int, latency_ms: float, *, degraded: int = 0) -> None:
        with self._lock:
            counts = self._of(version)
            counts.answered += rows
            counts.degraded += degraded
            counts.latencies_ms.append(latency_ms)

    def failed(self, version: int | None, rows: int) -> None:
        with self._lock:
            self._of(version).errors += rows

    def labelled(self, version: int, rows: int, correct: int) -> None:
        with self._lock:
            counts = self._of(version)
            counts.labelled += rows
            counts.correct += correct

    def totals(self) -> dict[str, int]:
        """Sums over every version."""
        with self._lock:
            values = list(self._counts.values())
        return {
            "answered": sum(c.answered for c in values),
            "errors": sum(c.errors for c in values),
            "degraded": sum(c.degraded for c in values),
        }

    def report(self) -> dict[str, dict[str, Any]]:
        """Per installed version (as a string key, for JSON): the counters and the median latency."""
        with self._lock:
            items = [(v, c) for v, c in self._counts.items() if v is not None]
            return {
                str(version): {
                    "answered": c.answered,
                    "errors": c.errors,
                    "degraded": c.degraded,
                    "labelled": c.labelled,
                    "correct": c.correct,
                    "latency_ms_p50": sorted(c.latencies_ms)[len(c.latencies_ms) // 2]
                    if c.latencies_ms
                    else None,
                }
                for version, c in items
            }
