"""`ensemble`: the mean of GBDT and a seasonal-naive forecast (forecast combination, as in the M4 results).

GBDT follows the recent level; seasonal-naive repeats last week (or last day, when the history is shorter
than two weeks) and is robust to bursts that the trees over-react to. Averaging the two cuts the error
where their mistakes are not correlated. P90 is the mean of the members' P90s.
"""

from __future__ import annotations

import numpy as np

from skyline.scheduling.forecasting.baselines import SeasonalNaive
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.gbdt import GradientBoosting
from skyline.scheduling.forecasting.series import DAY_S, WEEK_S, FloatArray, Series


class Ensemble(Forecaster):
    """Mean of `GradientBoosting` and `SeasonalNaive` (weekly when ≥ 2 weeks of history, else daily)."""

    name = "ensemble"

    def __init__(self, *, max_lead: int = 24) -> None:
        super().__init__()
        self.members: tuple[Forecaster, ...] = ()
        self.max_lead = max_lead

    def _fit(self, history: Series) -> None:
        weekly = len(history) * history.step_s >= 2 * WEEK_S
        naive = SeasonalNaive(period_s=WEEK_S if weekly else DAY_S, label="weekly" if weekly else "daily")
        members = (GradientBoosting(max_lead=self.max_lead), naive)
        for member in members:
            member.fit(history)
        self.members = members

    def _update(self, history: Series) -> None:
        for member in self.members:
            member.update(history)

    def predict_origins(
        self, series: Series, origins: list[int], horizon: int
    ) -> tuple[FloatArray, FloatArray]:
        """Each member forecasts every origin its fastest way (GBDT in one batch); then the mean."""
        if not origins:
            return super().predict_origins(series, origins, horizon)
        forecasts = [member.predict_origins(series, origins, horizon) for member in self.members]
        self._history = series.head(origins[-1])
        point: FloatArray = np.mean([p for p, _ in forecasts], axis=0)
        upper: FloatArray = np.mean([u for _, u in forecasts], axis=0)
        return self._tidy(point, upper, (len(origins), horizon))

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        forecasts = [member.predict_arrays(horizon) for member in self.members]
        point: FloatArray = np.mean([p for p, _ in forecasts], axis=0)
        upper: FloatArray = np.mean([u for _, u in forecasts], axis=0)
        return point, upper
