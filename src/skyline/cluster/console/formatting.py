"""How the console writes numbers and times (Jinja2 filters): units always shown, never a bare float."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import Undefined

T = TypeVar("T")


def _known(value: T | None) -> T | None:
    # A field missing from a row (``(n.sample or {}).cpu_percent`` before a node's first sample) is
    # Jinja's Undefined, not None: both mean "no value" and render as such, never raise.
    return None if isinstance(value, Undefined) else value


def clock_time(at_s: float | None) -> str:
    """An epoch time as UTC ``YYYY-MM-DD HH:MM:SS`` ('' when absent)."""
    at_s = _known(at_s)
    if at_s is None:
        return ""
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = _known(seconds)
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def ago(at_s: float | None) -> str:
    at_s = _known(at_s)
    return "" if at_s is None else duration(max(0.0, time.time() - at_s)) + " ago"


def percent(value: float | None) -> str:
    value = _known(value)
    return "–" if value is None else f"{value:.0f}%"


def milli(value: int | None) -> str:
    """CPU or GPU milli-units as units: 1500 → ``1.5``."""
    value = _known(value)
    if value is None:
        return ""
    return f"{value / 1000:g}"


def size(num_bytes: int | None) -> str:
    num_bytes = _known(num_bytes)
    if num_bytes is None:
        return ""
    amount = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


FILTERS: dict[str, Callable[..., Any]] = {
    "clock": clock_time,
    "duration": duration,
    "ago": ago,
    "percent": percent,
    "milli": milli,
    "size": size,
}
