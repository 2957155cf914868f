"""Gradient-boosted trees (scikit-learn HistGradientBoosting) on lag and calendar features, direct multi-lead.

One model serves every lead: each training row is (origin ``t``, lead ``h``) with features known at ``t``
only: the lead, recent changes, rolling means, the value one day and one week before the target (when
that is not in the future of ``t``), and the target's hour of day and day of week. The model learns the
change from the last value, so where nothing else is informative it falls back to persistence. A second
model with quantile loss gives P90. Missing lags are NaN, which the trees handle natively.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skyline.scheduling.forecasting.forecaster import UPPER_QUANTILE, Forecaster
from skyline.scheduling.forecasting.series import DAY_S, WEEK_S, FloatArray, Series

_CONTROLLER: Any = None


def _one_thread() -> Any:
    """Limit OpenMP to one thread: on a few hundred rows its thread start-up costs more than it saves,
    and on a busy 2-core machine 2 threads ran scikit-learn many times slower (DESIGN.md)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="openmp")


IntArray = np.ndarray[Any, np.dtype[np.int64]]
FIT_WINDOW_S = 6 * WEEK_S
MAX_ROWS = 20_000
RECENT_LAGS = (1, 2, 5)


def features(series: Series, origins: IntArray, leads: IntArray) -> FloatArray:
    """Rows of features for (origin, lead) pairs; an origin ``t`` knows ``values[:t]`` and nothing later."""
    y = series.values
    day = series.steps_per(DAY_S) if DAY_S % series.step_s == 0 else 0
    last_index = origins - 1
    last = y[last_index]
    target = last_index + leads
    cumulative = np.concatenate([[0.0], np.cumsum(y)])

    def known(index: IntArray) -> FloatArray:
        # The value at `index` relative to the last one, NaN where it is before the start or after the origin.
        ok = (index >= 0) & (index <= last_index)
        values: FloatArray = np.where(ok, y[np.clip(index, 0, len(y) - 1)] - last, np.nan)
        return values

    def mean_of_last(width: int) -> FloatArray:
        start = np.maximum(origins - width, 0)
        means: FloatArray = (cumulative[origins] - cumulative[start]) / (origins - start) - last
        return means

    columns: list[FloatArray] = [np.asarray(leads, dtype=np.float64), np.asarray(last, dtype=np.float64)]
    columns += [known(last_index - k) for k in RECENT_LAGS]
    columns += [mean_of_last(6), mean_of_last(max(day, 24))]
    if day:
        columns += [known(target - day), known(target - 7 * day)]
    seconds = np.asarray(series.start_s + target * series.step_s, dtype=np.float64)
    hour: FloatArray = (seconds % DAY_S) / 3600.0
    weekday: FloatArray = np.floor(seconds / DAY_S + 3) % 7  # the Unix epoch was a Thursday; Monday = 0
    columns += [hour, weekday]
    return np.column_stack(columns)


class GradientBoosting(Forecaster):
    """HistGradientBoosting point (squared error) and P90 (quantile loss) models over leads 1..max_lead."""

    name = "gbdt"

    def __init__(self, *, max_lead: int = 24, seed: int = 0) -> None:
        super().__init__()
        self.max_lead = max_lead
        self.seed = seed
        self._point: Any = None
        self._upper: Any = None
        self._usable = np.ones(0, dtype=bool)

    def _training_rows(self, history: Series) -> tuple[IntArray, IntArray]:
        n = len(history)
        first = max(n - int(FIT_WINDOW_S // history.step_s), 1)
        grid = np.meshgrid(np.arange(first, n), np.arange(1, self.max_lead + 1), indexing="ij")
        origins, leads = grid[0].ravel(), grid[1].ravel()
        inside = origins - 1 + leads <= n - 1
        origins, leads = origins[inside], leads[inside]
        if origins.size > MAX_ROWS:
            pick = np.random.default_rng(self.seed).choice(origins.size, MAX_ROWS, replace=False)
            origins, leads = origins[pick], leads[pick]
        return origins.astype(np.int64), leads.astype(np.int64)

    def _fit(self, history: Series) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        history.require_length(self.max_lead + 8, why=f"gbdt (max_lead {self.max_lead} + 8 steps)")
        origins, leads = self._training_rows(history)
        x = features(history, origins, leads)
        # A lag that no training row has (a weekly lag in a 5-day history) is dropped, not fed as all-NaN.
        self._usable = ~np.all(np.isnan(x), axis=0)
        x = x[:, self._usable]
        change = history.values[origins - 1 + leads] - history.values[origins - 1]
        common = {"max_iter": 100, "learning_rate": 0.1, "random_state": self.seed, "early_stopping": False}
        self._point = HistGradientBoostingRegressor(loss="absolute_error", **common).fit(x, change)
        self._upper = HistGradientBoostingRegressor(loss="quantile", quantile=UPPER_QUANTILE, **common).fit(
            x, change
        )

    def _update(self, history: Series) -> None:
        pass  # the features are read from the history at predict time; the trees stay as fitted

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        point, upper = self._predict_rows(self.history, np.array([len(self.history)]), horizon)
        return point[0], upper[0]

    def _predict_rows(self, series: Series, origins: IntArray, horizon: int) -> tuple[FloatArray, FloatArray]:
        """Forecasts from many origins in one call: features only read ``series.values[:origin]``."""
        rows = np.repeat(origins, horizon)
        leads = np.tile(np.arange(1, horizon + 1, dtype=np.int64), len(origins))
        x = features(series, rows, leads)[:, self._usable]
        last = series.values[rows - 1]
        shape = (len(origins), horizon)
        with _one_thread():
            point, upper = self._point.predict(x), self._upper.predict(x)
        return (last + point).reshape(shape), (last + upper).reshape(shape)

    def predict_origins(
        self, series: Series, origins: list[int], horizon: int
    ) -> tuple[FloatArray, FloatArray]:
        """Batched: one tree pass for every origin (the trees do not change between refits)."""
        if not origins or origins[0] < len(self.history) or origins != sorted(origins):
            return super().predict_origins(series, origins, horizon)
        self.update(series.head(origins[-1]))
        point, upper = self._predict_rows(series, np.array(origins, dtype=np.int64), horizon)
        return self._tidy(point, upper, (len(origins), horizon))
