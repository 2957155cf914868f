"""Summary metrics of a simulation `Outcome`: the numbers people compare policies by.

JCT = finish − submit; queueing delay = first start − submit; slowdown = JCT / duration; finish-time
fairness ρ = JCT / (duration × max(1, mean demand / capacity)) (Themis' ratio with a cluster-wide
contention estimate); utilization = busy GPU-time / (GPUs × makespan); "fragmented" GPUs = mean idle
GPUs while some job waits.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Sequence
from typing import Any

from skyline.simulation.outcome import Outcome

CONTRACT_KEYS = (
    "mean_jct_s",
    "p50_jct_s",
    "p95_jct_s",
    "p99_jct_s",
    "weighted_mean_jct_s",
    "mean_queue_s",
    "p99_queue_s",
    "makespan_s",
    "gpu_utilization",
    "preemptions",
    "decision_ms_mean",
    "decision_ms_p99",
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def measured_jobs(outcome: Outcome) -> list[int]:
    """Indices of the jobs inside the measurement window that finished."""
    n = len(outcome.trace.jobs)
    start, stop = outcome.config.window or (0, n)
    return [i for i in range(start, min(stop, n)) if outcome.finish[i] is not None]


def summarize(outcome: Outcome) -> dict[str, Any]:
    """The contract metrics (`CONTRACT_KEYS`) plus slowdown, fairness, fragmentation and memory."""
    jobs = outcome.trace.jobs
    chosen = measured_jobs(outcome)
    jct = [outcome.finish[i] - jobs[i].submit_s for i in chosen]  # type: ignore[operator]
    queue = [outcome.first_start[i] - jobs[i].submit_s for i in chosen]  # type: ignore[operator]
    gpu_time = [jobs[i].duration_s * jobs[i].gpus for i in chosen]
    slowdown = [j / jobs[i].duration_s for j, i in zip(jct, chosen, strict=True)]
    first = min((jobs[i].submit_s for i in chosen), default=0.0)
    last = max((outcome.finish[i] for i in chosen), default=0.0)  # type: ignore[type-var]
    span = max((f for f in outcome.finish if f is not None), default=0.0)
    capacity_s = outcome.total_gpus * span
    demand = sum(j.duration_s * j.gpus for j in jobs) / capacity_s if capacity_s else 0.0
    contention = max(1.0, demand)
    ftf = [s / contention for s in slowdown]
    decisions_ms = [d * 1000 for d in outcome.decision_s]
    weight = sum(gpu_time)
    return {
        "mean_jct_s": _mean(jct),
        "p50_jct_s": percentile(jct, 50),
        "p95_jct_s": percentile(jct, 95),
        "p99_jct_s": percentile(jct, 99),
        "weighted_mean_jct_s": sum(j * w for j, w in zip(jct, gpu_time, strict=True)) / weight
        if weight
        else math.nan,
        "mean_queue_s": _mean(queue),
        "p99_queue_s": percentile(queue, 99),
        "makespan_s": (last - first) if chosen else math.nan,  # type: ignore[operator]
        "gpu_utilization": outcome.busy_gpu_s / capacity_s if capacity_s else math.nan,
        "preemptions": sum(outcome.preemptions[i] for i in chosen),
        "decision_ms_mean": _mean(decisions_ms),
        "decision_ms_p99": percentile(decisions_ms, 99),
        "mean_slowdown": _mean(slowdown),
        "p99_slowdown": percentile(slowdown, 99),
        "ftf_mean": _mean(ftf),
        "ftf_max": max(ftf, default=math.nan),
        "mean_idle_gpus_while_waiting": outcome.idle_while_waiting_gpu_s / outcome.waiting_s
        if outcome.waiting_s
        else 0.0,
        "decisions": len(decisions_ms),
        "measured_jobs": len(chosen),
        "rejected_jobs": len(outcome.rejected),
        "unfinished_jobs": len(outcome.unfinished),
        "sim_wall_s": outcome.wall_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
