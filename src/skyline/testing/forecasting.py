"""Synthetic demand series with known answers, and a forecaster that records what it was shown (tests only)."""

from __future__ import annotations

import numpy as np

from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.series import DAY_S, FloatArray, Series
from skyline.scheduling.forecasting.synthetic import MONDAY_S, synthetic_requests

HOUR_S = 3600.0


def daily_sine(*, days: int, step_s: float = HOUR_S, level: float = 50.0, amplitude: float = 20.0) -> Series:
    """A pure daily sine: seasonal-naive-daily forecasts it exactly."""
    t = np.arange(round(days * DAY_S / step_s)) * step_s
    values = level + amplitude * np.sin(2 * np.pi * t / DAY_S)
    return Series.of(values, step_s=step_s, start_s=MONDAY_S, name="sine")


def step_change(*, before: int, after: int, low: float = 10.0, high: float = 30.0) -> Series:
    """``before`` steps at ``low`` then ``after`` steps at ``high``."""
    values = np.concatenate([np.full(before, low), np.full(after, high)]).astype(np.float64)
    return Series.of(values, step_s=HOUR_S, start_s=MONDAY_S, name="step")


def linear_trend(*, steps: int, slope: float = 0.5, start: float = 10.0) -> Series:
    """``start + slope · i``."""
    return Series.of(start + slope * np.arange(steps), step_s=HOUR_S, start_s=MONDAY_S, name="trend")


def noisy_weekly(*, days: int, seed: int = 0, step_s: float = HOUR_S) -> Series:
    """Requests per step with a daily and a weekly cycle and Poisson noise (non-negative, with zeros)."""
    series = synthetic_requests(days=days, seed=seed, step_s=step_s)
    return Series.of(series.values, step_s=step_s, start_s=series.start_s, name="requests")


class RecordingForecaster(Forecaster):
    """Wraps a real forecaster and records the length of every history it is fitted or updated on."""

    def __init__(self, inner: Forecaster) -> None:
        super().__init__()
        self.inner = inner
        self.name = f"recording-{inner.name}"
        self.seen: list[tuple[str, int]] = []

    def _fit(self, history: Series) -> None:
        self.seen.append(("fit", len(history)))
        self.inner.fit(history)

    def _update(self, history: Series) -> None:
        self.seen.append(("update", len(history)))
        self.inner.update(history)

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        return self.inner.predict_arrays(horizon)
