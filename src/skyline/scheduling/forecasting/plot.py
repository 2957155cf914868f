"""Drawing backtests: the actual series and each model's forecasts over the end of the test part."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyline.scheduling.forecasting.backtest import BacktestResult
from skyline.scheduling.forecasting.series import Series


def plot_backtests(
    series: Series, results: Sequence[BacktestResult], path: Path, *, last_steps: int = 288
) -> Path:
    """Actual vs point forecasts (and the best model's P90 band) over the last ``last_steps`` test steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    first = max(len(series) - last_steps, 0)
    hours = (series.times_s(first) - series.times_s(first, 1)[0]) / 3600.0
    ax.plot(hours, series.values[first:], color="black", linewidth=1.4, label="actual")
    best = min(results, key=lambda r: r.accuracy.mae) if results else None
    for result in results:
        steps, point, upper = _flatten(result)
        keep = steps >= first
        x = (series.start_s + steps[keep] * series.step_s - series.times_s(first, 1)[0]) / 3600.0
        label = f"{result.model} (MAE {result.accuracy.mae:.3g})"
        ax.plot(x, point[keep], linewidth=1, label=label)
        if result is best:
            ax.fill_between(x, point[keep], upper[keep], alpha=0.15, label=f"{result.model} P90")
    ax.set_xlabel(f"hours from {np.datetime64(int(series.times_s(first, 1)[0]), 's')} UTC")
    ax.set_ylabel(series.name)
    ax.set_title(f"rolling-origin backtest, last {len(hours)} steps of {series.step_s:g} s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _flatten(result: BacktestResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step index, point, P90) of every scored forecast, in time order."""
    horizon = result.point.shape[1]
    steps = (np.array(result.origins)[:, None] + np.arange(horizon)[None, :]).ravel()
    point, upper = result.point.ravel(), result.upper.ravel()
    keep = ~np.isnan(result.actual.ravel())
    order = np.argsort(steps[keep], kind="stable")
    return steps[keep][order], point[keep][order], upper[keep][order]
