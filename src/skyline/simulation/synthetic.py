"""Synthetic Philly-like traces and load-sweep resampling.

Gavel's published model of the Philly trace: durations 10^U(1.5, 3) minutes for 80% of jobs and
10^U(3, 4) minutes for 20%; 1/2/4/8 GPUs at 70/10/15/5%; Poisson arrivals at ``jobs_per_hour``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from skyline.errors import ConfigError
from skyline.scheduling.packing import NodeSpec
from skyline.simulation.trace import Trace, TraceJob

GPU_MIX: tuple[tuple[int, float], ...] = ((1, 0.70), (2, 0.10), (4, 0.15), (8, 0.05))


def _check(jobs: int, jobs_per_hour: float) -> None:
    if jobs < 1:
        raise ConfigError(f"a trace needs at least one job, got {jobs}")
    if not jobs_per_hour > 0:
        raise ConfigError(f"the arrival rate must be > 0 jobs/hour, got {jobs_per_hour}")


def synthetic_trace(
    *,
    jobs: int,
    jobs_per_hour: float,
    seed: int = 0,
    job_types: Sequence[str] = (),
    nodes: Sequence[NodeSpec] = (),
) -> Trace:
    """``jobs`` Philly-like jobs arriving as a Poisson process; job types drawn uniformly if given."""
    _check(jobs, jobs_per_hour)
    rng = random.Random(seed)
    sizes = [g for g, _ in GPU_MIX]
    weights = [w for _, w in GPU_MIX]
    out: list[TraceJob] = []
    t = 0.0
    for i in range(jobs):
        t += rng.expovariate(jobs_per_hour / 3600)
        low, high = (1.5, 3.0) if rng.random() < 0.8 else (3.0, 4.0)
        minutes = 10 ** rng.uniform(low, high)
        out.append(
            TraceJob(
                id=f"syn-{i}",
                submit_s=t,
                duration_s=minutes * 60,
                replicas=rng.choices(sizes, weights)[0],
                job_type=rng.choice(job_types) if job_types else "",
            )
        )
    return Trace(name=f"synthetic-{jobs_per_hour:g}jph-s{seed}", jobs=tuple(out), nodes=tuple(nodes))


def resample(trace: Trace, *, jobs: int, jobs_per_hour: float, seed: int = 0) -> Trace:
    """A load-sweep trace: ``jobs`` jobs drawn with replacement from ``trace``, Poisson at the rate."""
    _check(jobs, jobs_per_hour)
    if not trace.jobs:
        raise ConfigError(f"cannot resample the empty trace {trace.name}")
    rng = random.Random(seed)
    t = 0.0
    out: list[TraceJob] = []
    for i in range(jobs):
        t += rng.expovariate(jobs_per_hour / 3600)
        src = rng.choice(trace.jobs)
        out.append(replace(src, id=f"r{i}-{src.id}", submit_s=t))
    return Trace(name=f"{trace.name}@{jobs_per_hour:g}jph-s{seed}", jobs=tuple(out), nodes=trace.nodes)


def offered_load(trace: Trace, total_gpus: int) -> float:
    """GPU-time asked per GPU-time available between the first and the last arrival (1.0 = saturated)."""
    span = trace.jobs[-1].submit_s - trace.jobs[0].submit_s
    if span <= 0 or total_gpus <= 0:
        return float("inf")
    return sum(j.duration_s * j.gpus for j in trace.jobs) / (span * total_gpus)


def effective_load(trace: Trace, total_gpus: int, *, stretch: float = 1.0) -> float:
    """GPU-time that arrives during the arrival span AND could run inside it, per GPU-time available.

    Unlike `offered_load`, a 50-day job arriving near the end counts only until the span ends, so a
    heavy tail cannot make a mostly idle cluster look saturated. ``stretch`` scales arrival times.
    """
    span = (trace.jobs[-1].submit_s - trace.jobs[0].submit_s) * stretch
    if span <= 0 or total_gpus <= 0:
        return float("inf")
    start = trace.jobs[0].submit_s * stretch
    work = sum(min(j.duration_s, start + span - j.submit_s * stretch) * j.gpus for j in trace.jobs)
    return work / (span * total_gpus)


def at_load(trace: Trace, *, load: float, total_gpus: int) -> Trace:
    """The same jobs with arrival times scaled so that the `effective_load` on ``total_gpus`` is ``load``."""
    if not load > 0:
        raise ConfigError(f"load must be > 0, got {load}")
    low, high = 1e-6, 1e9  # stretch factor; effective load falls as arrivals spread out
    factor = 1.0
    for _ in range(200):
        factor = (low * high) ** 0.5
        if effective_load(trace, total_gpus, stretch=factor) > load:
            low = factor
        else:
            high = factor
        if high / low < 1 + 1e-9:
            break
    stretched = tuple(replace(j, submit_s=j.submit_s * factor) for j in trace.jobs)
    return Trace(name=f"{trace.name}@load{load:g}", jobs=stretched, nodes=trace.nodes)


def resample_at_load(trace: Trace, *, jobs: int, load: float, total_gpus: int, seed: int = 0) -> Trace:
    """`resample`, then `at_load`: heavy-tailed traces (Philly) make the load of a few thousand
    resampled jobs swing widely around its expectation; calibrating each sample keeps a sweep honest."""
    sample = resample(trace, jobs=jobs, jobs_per_hour=3600.0, seed=seed)
    return Trace(
        name=f"{trace.name}@load{load:g}-s{seed}", jobs=at_load(sample, load=load, total_gpus=total_gpus).jobs
    )
