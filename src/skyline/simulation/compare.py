"""Several policies on the same trace (and optionally a load sweep): summary.json and PNG plots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError
from skyline.simulation.config import SimConfig
from skyline.simulation.outcome import Outcome
from skyline.simulation.plots import plot_jct_cdf, plot_jct_vs_load, plot_utilization
from skyline.simulation.runner import (
    build_policy,
    check_throughputs,
    cluster_for,
    contract_metrics,
    mean_metrics,
    run_one,
)
from skyline.simulation.sources import TraceSource, load_trace
from skyline.simulation.trace import Trace


def _write(path: Path, payload: Any) -> None:
    import json
    import math

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(payload), indent=2) + "\n")


def sweep_of(loads: str | None, *, seeds: int | None, load: float | None) -> list[float]:
    """``--loads`` as numbers; refuses ``--seeds`` without a sweep and ``--load`` with one."""
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if not loads:
        if seeds is not None:
            raise ConfigError("--seeds is used only by a --loads sweep; drop it")
        return []
    if load is not None:
        raise ConfigError("--load and --loads both set the arrival rate; give one")
    try:
        return [float(v) for v in loads.split(",")]
    except ValueError:
        raise ConfigError(f"--loads takes comma-separated jobs/hour like 10,20,30, got {loads!r}") from None


Runner = Callable[[Trace, str], tuple[Outcome, dict[str, Any]]]


def _once(
    names: Sequence[str], source: TraceSource, config: SimConfig, run: Runner, out: Path
) -> dict[str, Any]:
    """Every policy on the trace as given: metrics, a JCT CDF and a utilization plot."""
    trace = load_trace(source)
    check_throughputs(trace, config)
    summary: dict[str, Any] = {"policies": {}, "details": {}}
    outcomes: dict[str, Outcome] = {}
    for name in names:
        outcomes[name], metrics = run(trace, name)
        summary["policies"][name] = contract_metrics(metrics)
        summary["details"][name] = metrics
    summary["trace"] = {"name": trace.name, "jobs": len(trace.jobs), "gpus": outcomes[names[0]].total_gpus}
    summary["plots"] = [
        str(plot_jct_cdf(outcomes, out / "jct_cdf.png")),
        str(plot_utilization(outcomes, out / "utilization.png")),
    ]
    return summary


def _sweep(
    names: Sequence[str], source: TraceSource, loads: Sequence[float], seeds: int, run: Runner, out: Path
) -> dict[str, Any]:
    """Every policy at every load × seed (resampled at that rate); metrics of the highest load."""
    summary: dict[str, Any] = {"policies": {}, "details": {}}
    sweep: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for load in loads:
        per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for k in range(seeds):
            trace = load_trace(dataclasses.replace(source, jobs_per_hour=load, seed=source.seed + k))
            for name in names:
                per_seed[name].append(run(trace, name)[1])
        for name in names:
            averaged = mean_metrics(per_seed[name])
            sweep[name].append({"jobs_per_hour": load, "seeds": seeds, **averaged})
            summary["policies"][name] = contract_metrics(averaged)
            summary["details"][name] = averaged
    summary["sweep"] = sweep
    summary["plots"] = [str(plot_jct_vs_load(sweep, out / "jct_vs_load.png"))]
    return summary


def compare_policies(
    names: Sequence[str],
    source: TraceSource,
    cluster: str | None,
    config: SimConfig,
    *,
    out: Path,
    loads: Sequence[float] = (),
    seeds: int = 1,
    gittins_prior: Sequence[float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``names`` on ``source``; with ``loads``, also for each load × seed (resampled at that rate).

    Writes ``out/summary.json`` = ``{"policies": {name: metrics}, ...}`` and PNGs; returns the summary.
    Without a sweep the metrics are from the trace as given; with one, from the highest load
    (averaged over seeds), and ``"sweep"`` holds every load.
    """
    out.mkdir(parents=True, exist_ok=True)
    tick = progress or (lambda _k: None)

    def run(trace: Trace, name: str) -> tuple[Outcome, dict[str, Any]]:
        result = run_one(
            trace, build_policy(name, gittins_prior=gittins_prior), cluster_for(trace, cluster), config
        )
        tick(1)
        return result

    if loads:
        summary = _sweep(names, source, loads, seeds, run, out)
    else:
        summary = _once(names, source, config, run, out)
    _write(out / "summary.json", summary)
    return summary
