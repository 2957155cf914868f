"""Holt-Winters (additive damped trend, additive daily season): statsmodels estimates, a recursion updates.

statsmodels' `ExponentialSmoothing` estimates the smoothing parameters and initial states on the most
recent weeks of the history. Conditioning on newer data (`update`) then runs the same state recursion
over the new steps only (checked against statsmodels' fitted values in the tests), so a rolling backtest
costs one estimation per refit and O(1) per step in between. P90 = point + the in-sample 90th percentile of
one-step residuals × √lead (errors of a random walk grow with the square root of the lead).
"""

from __future__ import annotations

import warnings

import numpy as np

from skyline.scheduling.forecasting.forecaster import Forecaster, empirical_upper
from skyline.scheduling.forecasting.series import DAY_S, WEEK_S, FloatArray, Series

FIT_WINDOW_S = 4 * WEEK_S


class HoltWinters(Forecaster):
    """Additive Holt-Winters with a damped trend and a season of ``period_s`` (a day by default)."""

    name = "holt-winters"

    def __init__(self, *, period_s: float = DAY_S) -> None:
        super().__init__()
        self.period_s = period_s
        self._alpha = self._beta = self._gamma = 0.0
        self._phi = 1.0
        self._level = self._trend = 0.0
        self._season: list[float] = []  # seasonal states of one cycle; _next is the next step's
        self._next = 0
        self._seen = 0  # history steps the states have absorbed
        self._residual_q = 0.0

    def _fit(self, history: Series) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        m = history.steps_per(self.period_s)
        history.require_length(2 * m, why=f"holt-winters (two seasons of {m} steps)")
        window = history.values[-max(int(FIT_WINDOW_S // history.step_s), 2 * m) :]
        with warnings.catch_warnings():
            # The optimiser warns when it stops at a bound; the backtest, not the warning, judges the model.
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                window,
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=m,
                initialization_method="estimated",
            )
            params = model.fit().params
        self._alpha = float(params["smoothing_level"])
        self._beta = float(params["smoothing_trend"])
        self._gamma = float(params["smoothing_seasonal"])
        self._phi = float(params["damping_trend"])
        self._level, self._trend = float(params["initial_level"]), float(params["initial_trend"])
        self._season = [float(s) for s in params["initial_seasons"]]
        self._next = 0
        residuals = self._absorb(window)
        self._residual_q = max(empirical_upper(residuals), 0.0)
        self._seen = len(history)

    def _absorb(self, values: FloatArray) -> FloatArray:
        """Run the state recursion over ``values``; return the one-step residuals (actual − forecast)."""
        a, b, g, phi = self._alpha, self._beta, self._gamma, self._phi
        level, trend, season, at = self._level, self._trend, self._season, self._next
        m = len(season)
        residuals = np.empty(len(values))
        for i, y in enumerate(values.tolist()):
            s_old = season[at]
            residuals[i] = y - (level + phi * trend + s_old)
            new_level = a * (y - s_old) + (1 - a) * (level + phi * trend)
            season[at] = g * (y - level - phi * trend) + (1 - g) * s_old
            trend = b * (new_level - level) + (1 - b) * phi * trend
            level = new_level
            at = (at + 1) % m
        self._level, self._trend, self._next = level, trend, at
        return residuals

    def _update(self, history: Series) -> None:
        new = history.values[self._seen :]
        if new.size:
            self._absorb(new)
            self._seen = len(history)

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        m = len(self._season)
        damping = np.cumsum(self._phi ** np.arange(1, horizon + 1))
        season = np.array([self._season[(self._next + h) % m] for h in range(horizon)])
        point = self._level + damping * self._trend + season
        spread = self._residual_q * np.sqrt(np.arange(1, horizon + 1))
        return point, point + spread
