"""SARIMA (statsmodels SARIMAX), kept affordable: bounded fit window, state-space filtering between refits.

Short seasons (≤ 48 steps, e.g. a day of hours) get a true seasonal model, SARIMA(1,0,1)(1,1,1)_m. Long
seasons (a day of 10-minute steps is 144) would make the state vector hundreds wide and a fit take
minutes, so they get ARIMA(2,0,1) errors around a constant plus ``fourier_pairs`` daily sine/cosine pairs
(dynamic harmonic regression, Hyndman & Athanasopoulos, FPP3 §12.1). `update` appends the new steps to the
fitted state-space model with ``extend`` (a Kalman filter pass over the new steps only, no re-estimation).
P90 is the upper end of the model's own central 80% prediction interval.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from skyline.scheduling.forecasting.forecaster import UPPER_QUANTILE, Forecaster
from skyline.scheduling.forecasting.series import DAY_S, WEEK_S, FloatArray, Series

FIT_WINDOW_S = 2 * WEEK_S
MAX_SEASONAL_STEPS = 48


class Sarima(Forecaster):
    """SARIMA with a daily season (or a Fourier daily season when the day has more than 48 steps)."""

    name = "sarima"

    def __init__(self, *, period_s: float = DAY_S, fourier_pairs: int = 4) -> None:
        super().__init__()
        self.period_s = period_s
        self.fourier_pairs = fourier_pairs
        self._results: Any = None
        self._seen = 0

    def _fourier(self, history: Series, first: int, count: int) -> FloatArray | None:
        m = history.steps_per(self.period_s)
        if m <= MAX_SEASONAL_STEPS:
            return None
        phase = 2 * np.pi * np.arange(first, first + count)[:, None] / m
        k = np.arange(1, self.fourier_pairs + 1)[None, :]
        return np.hstack([np.sin(k * phase), np.cos(k * phase)])

    def _fit(self, history: Series) -> None:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        m = history.steps_per(self.period_s)
        history.require_length(2 * m, why=f"sarima (two seasons of {m} steps)")
        first = max(len(history) - max(int(FIT_WINDOW_S // history.step_s), 2 * m), 0)
        window = history.values[first:]
        exog = self._fourier(history, first, len(window))
        if exog is None:
            model = SARIMAX(window, order=(1, 0, 1), seasonal_order=(1, 1, 1, m))
        else:
            model = SARIMAX(window, exog=exog, order=(2, 0, 1), trend="c")
        with warnings.catch_warnings():
            # Convergence and start-parameter warnings are routine on real load; the backtest judges.
            warnings.simplefilter("ignore")
            self._results = model.fit(disp=False, maxiter=50)
        self._seen = len(history)

    def _update(self, history: Series) -> None:
        if len(history) == self._seen:
            return
        new = history.values[self._seen :]
        exog = self._fourier(history, self._seen, len(new))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._results = self._results.extend(new, exog=exog)
        self._seen = len(history)

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        exog = self._fourier(self.history, self._seen, horizon)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            forecast = self._results.get_forecast(horizon, exog=exog)
            point = np.asarray(forecast.predicted_mean, dtype=np.float64)
            bounds = np.asarray(forecast.conf_int(alpha=2 * (1 - UPPER_QUANTILE)), dtype=np.float64)
        return point, bounds[:, 1]
