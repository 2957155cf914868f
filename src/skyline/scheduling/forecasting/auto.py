"""`auto`: picks a forecaster by a rolling-origin backtest on the training part only, then refits it.

The last ``validation`` share of the history (at most a week, at least ``horizon`` steps) is held out; each
candidate that the history is long enough for is backtested there (origins every ``horizon`` steps, no
refit inside the validation) and the lowest MAE wins. The test part of an outer backtest is never seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from skyline.errors import DataError
from skyline.scheduling.forecasting.backtest import BacktestConfig, backtest
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.series import WEEK_S, FloatArray, Series

Factory = Callable[[int], Forecaster]


class Auto(Forecaster):
    """Chooses among ``candidates`` (name → factory taking the horizon) by validation MAE."""

    name = "auto"

    def __init__(self, *, candidates: dict[str, Factory], horizon: int, validation: float = 0.2) -> None:
        super().__init__()
        self.candidates = dict(candidates)
        self.horizon = horizon
        self.validation = validation
        self.chosen: Forecaster | None = None
        self.scores: dict[str, float] = {}

    def _fit(self, history: Series) -> None:
        held_out = min(round(len(history) * self.validation), round(WEEK_S / history.step_s))
        held_out = max(held_out, self.horizon)
        history.require_length(
            held_out + 2, why=f"auto (a validation part of {held_out} steps and a history)"
        )
        config = BacktestConfig(horizon=self.horizon, test_steps=held_out, refit_every=held_out + 1)
        training = history.head(len(history) - held_out)
        self.scores = {}
        for name, factory in self.candidates.items():
            try:
                factory(self.horizon).fit(training)  # too short for this model: skip it, say why below
            except DataError:
                continue
            self.scores[name] = backtest(history, factory(self.horizon), config).accuracy.mae
        finite = {n: s for n, s in self.scores.items() if math.isfinite(s)}
        if not finite:
            raise DataError(
                f"auto: no candidate ({', '.join(self.candidates)}) fits a training part of "
                f"{len(training)} steps; give a longer history"
            )
        best = min(finite, key=lambda n: finite[n])
        self.chosen = self.candidates[best](self.horizon)
        self.chosen.fit(history)

    def _update(self, history: Series) -> None:
        assert self.chosen is not None
        self.chosen.update(history)

    def predict_origins(
        self, series: Series, origins: list[int], horizon: int
    ) -> tuple[FloatArray, FloatArray]:
        """The chosen model's forecasts, batched the way it batches them."""
        if self.chosen is None or not origins:
            return super().predict_origins(series, origins, horizon)
        forecasts = self.chosen.predict_origins(series, origins, horizon)
        self._history = series.head(origins[-1])
        return forecasts

    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        assert self.chosen is not None
        return self.chosen.predict_arrays(horizon)
