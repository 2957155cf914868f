"""Trace readers and the discrete-event simulator: a simulated clock and executor for the one scheduler.

Names are imported on first use (matplotlib, for the plots, only when asked for).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "compare": ("compare_policies",),
    "config": ("SimConfig",),
    "engine": ("Simulation", "simulate"),
    "executor": ("SimClock", "SimExecutor"),
    "metrics": ("summarize",),
    "outcome": ("Outcome",),
    "runner": ("build_policy", "simulate_policy"),
    "sources": ("READERS", "TraceReader", "TraceSource", "load_trace"),
    "synthetic": ("at_load", "resample", "synthetic_trace"),
    "throughput": ("read_gavel_throughputs",),
    "trace": ("Trace", "TraceJob", "parse_cluster"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
