"""PNG plots of simulation results (matplotlib, Agg backend; imported only when drawing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyline.simulation.metrics import measured_jobs
from skyline.simulation.outcome import Outcome


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_jct_cdf(outcomes: Mapping[str, Outcome], path: Path) -> Path:
    """CDF of job completion time per policy (log x)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, outcome in outcomes.items():
        jobs = outcome.trace.jobs
        jct = sorted(outcome.finish[i] - jobs[i].submit_s for i in measured_jobs(outcome))  # type: ignore[operator]
        if jct:
            ax.step(jct, [(k + 1) / len(jct) for k in range(len(jct))], where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s)")
    ax.set_ylabel("fraction of jobs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_utilization(outcomes: Mapping[str, Outcome], path: Path) -> Path:
    """Busy GPUs (fraction of the cluster) over time, per policy, as recorded at each decision."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, outcome in outcomes.items():
        points = outcome.timeline
        step = max(1, len(points) // 2000)  # enough points for the eye, small files
        xs = [t / 3600 for t, _, _ in points[::step]]
        ys = [busy / outcome.total_gpus for _, busy, _ in points[::step]]
        ax.step(xs, ys, where="post", label=name, alpha=0.8)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("GPU utilization")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_jct_vs_load(sweep: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> Path:
    """Mean JCT against offered load (jobs/hour), one line per policy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in sweep.items():
        xs = [p["jobs_per_hour"] for p in points]
        ax.plot(xs, [p["mean_jct_s"] / 3600 for p in points], marker="o", label=name)
    ax.set_xlabel("load (jobs/hour)")
    ax.set_ylabel("mean JCT (h)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
