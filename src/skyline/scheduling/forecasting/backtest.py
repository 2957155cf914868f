"""Rolling-origin backtest: fit on the past, forecast the next ``horizon`` steps, move on, score.

The test part is the last ``test_steps`` of the series. From each origin ``t`` (every ``stride`` steps,
``horizon`` by default so that every test step is forecast exactly once) the forecaster sees
``series.head(t)`` and nothing later, forecasts ``horizon`` steps, and the forecasts are scored against
the actuals. Parameters are re-estimated (`fit`) every ``refit_every`` steps; in between the forecaster is
only conditioned on the newer data (`update`), which keeps SARIMA and GBDT affordable over long tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from skyline.errors import ConfigError
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.metrics import Accuracy, accuracy, naive_scale
from skyline.scheduling.forecasting.series import DAY_S, FloatArray, Series

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    """``horizon`` steps per forecast, the last ``test_steps`` as test, origins every ``stride`` steps."""

    horizon: int
    test_steps: int
    stride: int | None = None
    refit_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("horizon", "test_steps", "stride", "refit_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"backtest {name} must be a whole number ≥ 1, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestResult:
    """Per-origin forecasts (``origins`` × ``horizon``; NaN past the end of the series) and their accuracy."""

    model: str
    origins: tuple[int, ...]
    actual: FloatArray
    point: FloatArray
    upper: FloatArray
    accuracy: Accuracy
    fits: int
    seconds: float


def origins_for(length: int, config: BacktestConfig) -> list[int]:
    """The forecast origins: from the start of the test part to its end, every ``stride`` steps."""
    first = length - config.test_steps
    if first < 1:
        raise ConfigError(
            f"test part of {config.test_steps} steps leaves no history in a series of {length} steps; "
            "use fewer --test-days"
        )
    return list(range(first, length, config.stride or config.horizon))


def backtest(
    series: Series, forecaster: Forecaster, config: BacktestConfig, *, progress: Progress | None = None
) -> BacktestResult:
    """Run ``forecaster`` over the test part of ``series`` from every origin and score it."""
    origins = origins_for(len(series), config)
    refit_every = config.refit_every or _default_refit(series)
    shape = (len(origins), config.horizon)
    actual, point, upper = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    started = time.perf_counter()
    blocks = _refit_blocks(origins, refit_every)
    row = 0
    for block in blocks:
        forecaster.fit(series.head(block[0]))  # everything it may see: strictly before the first origin
        p, u = forecaster.predict_origins(series, block, config.horizon)
        for origin, p_row, u_row in zip(block, p, u, strict=True):
            steps = min(config.horizon, len(series) - origin)
            actual[row, :steps] = series.values[origin : origin + steps]
            point[row, :steps], upper[row, :steps] = p_row[:steps], u_row[:steps]
            row += 1
        if progress is not None:
            progress(len(block))
    seconds = time.perf_counter() - started
    scored = ~np.isnan(actual)
    training = series.values[: origins[0]]
    scale = naive_scale(training, _season_steps(series))
    score = accuracy(actual[scored], point[scored], upper[scored], scale=scale)
    return BacktestResult(
        model=forecaster.name,
        origins=tuple(origins),
        actual=actual,
        point=point,
        upper=upper,
        accuracy=score,
        fits=len(blocks),
        seconds=seconds,
    )


def _refit_blocks(origins: list[int], refit_every: int) -> list[list[int]]:
    """Origins grouped by the fit they use: a new block once ``refit_every`` steps have passed."""
    blocks: list[list[int]] = []
    for origin in origins:
        if not blocks or origin - blocks[-1][0] >= refit_every:
            blocks.append([])
        blocks[-1].append(origin)
    return blocks


def _season_steps(series: Series) -> int:
    """A day of steps when a day is a whole number of steps, else 1 (MASE then scales by persistence)."""
    steps = DAY_S / series.step_s
    return round(steps) if abs(steps - round(steps)) < 1e-9 and steps >= 1 else 1


def _default_refit(series: Series) -> int:
    """Re-estimate once a week of steps by default: load patterns drift over weeks, not hours."""
    return max(round(7 * DAY_S / series.step_s), 1)
