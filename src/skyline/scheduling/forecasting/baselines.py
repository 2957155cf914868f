"""The trivial forecasters every other one must beat: persistence and seasonal-naive (daily, weekly).

Their P90 is the empirical 90th percentile of their own errors on the last weeks of the history: for
persistence the change over ``h`` steps, for seasonal-naive the change over one season.
"""

from __future__ import annotations

import numpy as np

from skyline.scheduling.forecasting.forecaster import Forecaster, empirical_upper
from skyline.scheduling.forecasting.series import DAY_S, WEEK_S, FloatArray, Series

# Errors are measured on the most recent four weeks at most: recent behaviour, bounded cost.
ERROR_WINDOW_S = 4 * WEEK_S


class Persistence(Forecaster):
    """Every future step equals the last observed value ("tomorrow is like today")."""

    name = "persistence"

    def __init__(self) -> None:
        super().__init__()
        self._upper_by_lead: dict[int, float] = {}

    def _fit(self, history: Series) -> None:
        history.require_length(2, why="persistence (to measure its errors)")
        self._upper_by_lead = {}
        self._error_values = history.values[-int(ERROR_WINDOW_S // history.step_s) - 1 :]

    def _update(self, history: Series) -> None:
        pass  # the forecast is read from the history itself; the error quantiles stay as fitted

    def _upper(self, lead: int) -> float:
        if lead not in self._upper_by_lead:
            y = self._error_values
            self._upper_by_lead[lead] = empirical_upper(y[lead:] - y[:-lead]) if len(y) > lead else 0.0
        return self._upper_by_lead[lead]

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        last = float(self.history.values[-1])
        point = np.full(horizon, last)
        upper = point + np.array([self._upper(h) for h in range(1, horizon + 1)])
        return point, upper


class SeasonalNaive(Forecaster):
    """Every future step equals the value one season (a day or a week) earlier."""

    def __init__(self, *, period_s: float, label: str) -> None:
        super().__init__()
        self.period_s = period_s
        self.name = f"seasonal-naive-{label}"
        self._upper = 0.0

    def _fit(self, history: Series) -> None:
        season = history.steps_per(self.period_s)
        history.require_length(season, why=f"{self.name} (one season of {season} steps)")
        y = history.values[-int(ERROR_WINDOW_S // history.step_s) - season :]
        self._upper = empirical_upper(y[season:] - y[:-season])

    def _update(self, history: Series) -> None:
        pass

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        history = self.history
        season = history.steps_per(self.period_s)
        last_season = history.values[-season:]
        point = np.resize(last_season, horizon).astype(np.float64)  # repeats the season past its length
        return point, point + self._upper


def seasonal_naive_daily() -> SeasonalNaive:
    return SeasonalNaive(period_s=DAY_S, label="daily")


def seasonal_naive_weekly() -> SeasonalNaive:
    return SeasonalNaive(period_s=WEEK_S, label="weekly")
