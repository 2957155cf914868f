"""Trace readers and the discrete-event simulator: a simulated clock and executor for the one scheduler.

Names are imported on first use (matplotlib, for the plots, only when asked for).
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
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
    },
)
