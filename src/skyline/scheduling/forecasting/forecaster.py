"""`Forecaster`: the one interface every demand forecaster implements (a plug-in family with a registry).

A forecaster learns from a history (`fit`), may be handed a longer history later without re-estimating its
parameters (`update`, which is what makes rolling-origin backtests and per-step autoscaling affordable),
and predicts the next ``horizon`` steps as a point forecast and a P90 upper quantile (`predict`), returned
as the core `DemandForecast` that policies read from `ClusterState.forecasts`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from skyline.core.forecast import DemandForecast
from skyline.errors import ConfigError
from skyline.scheduling.forecasting.series import FloatArray, Series

UPPER_QUANTILE = 0.9


class Forecaster(ABC):
    """Base of every forecaster: checks the calls, clips counts at zero, keeps P90 ≥ point.

    Subclasses implement `_fit` and `_predict`, and `_update` when conditioning on new data can be done
    more cheaply than a refit (the default refits).
    """

    name: str = "forecaster"

    def __init__(self) -> None:
        self._history: Series | None = None

    @property
    def history(self) -> Series:
        """The history the forecaster was last fitted or updated on."""
        if self._history is None:
            raise ConfigError(f"forecaster {self.name!r} is not fitted; call fit(history) first")
        return self._history

    def fit(self, history: Series) -> None:
        """Estimate the parameters from ``history`` and condition on it (a forecast starts at its end).

        Raises `DataError` when the history is too short for the model (shorter than its season, ...).
        """
        if len(history) == 0:
            raise ConfigError(f"forecaster {self.name!r}: cannot fit an empty history")
        self._fit(history)
        self._history = history

    def update(self, history: Series) -> None:
        """Condition on ``history``, which extends the last one, keeping the parameters already fitted."""
        previous = self.history
        if (
            history.step_s != previous.step_s
            or history.start_s != previous.start_s
            or len(history) < len(previous)
        ):
            raise ConfigError(
                f"forecaster {self.name!r}: update() takes the same series extended (same start and step, "
                f"at least {len(previous)} steps); call fit() for a different series"
            )
        self._update(history)
        self._history = history

    def predict(self, horizon: int) -> DemandForecast:
        """The next ``horizon`` steps after the history: ``point`` and ``quantiles[0.9]``."""
        history = self.history
        if horizon < 1:
            raise ConfigError(f"forecast horizon must be ≥ 1 step, got {horizon}")
        point, upper = self.predict_arrays(horizon)
        return DemandForecast(
            series=history.name,
            start_s=history.end_s,
            step_s=history.step_s,
            point=tuple(float(v) for v in point),
            quantiles={UPPER_QUANTILE: tuple(float(v) for v in upper)},
        )

    def predict_arrays(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        """`predict` as two arrays of length ``horizon`` (point, P90), for loops that need speed."""
        point, upper = self._predict(horizon)
        return self._tidy(np.asarray(point), np.asarray(upper), (horizon,))

    def predict_origins(
        self, series: Series, origins: list[int], horizon: int
    ) -> tuple[FloatArray, FloatArray]:
        """Forecasts from each origin ``t`` in turn, each conditioned on ``series.head(t)`` only.

        ``series`` extends the fitted history and ``origins`` increase from at least its length. The
        result is (point, P90), each ``len(origins)`` × ``horizon``. The default updates and predicts
        origin by origin; forecasters whose forecast is a pure function of the history (GBDT) batch it.
        """
        points, uppers = [], []
        for origin in origins:
            if origin != len(self.history):
                self.update(series.head(origin))
            point, upper = self.predict_arrays(horizon)
            points.append(point)
            uppers.append(upper)
        return np.array(points), np.array(uppers)

    def _tidy(
        self, point: FloatArray, upper: FloatArray, shape: tuple[int, ...]
    ) -> tuple[FloatArray, FloatArray]:
        point = point.astype(np.float64)
        upper = np.maximum(upper.astype(np.float64), point)
        if point.shape != shape or upper.shape != shape:
            raise RuntimeError(f"forecaster {self.name!r} returned shape {point.shape}, expected {shape}")
        if self.history.nonnegative:  # counts and capacities: a negative forecast only adds error
            point, upper = np.maximum(point, 0.0), np.maximum(upper, 0.0)
        return point, upper

    @abstractmethod
    def _fit(self, history: Series) -> None:
        """Estimate parameters from ``history`` (raise `DataError` if it is too short)."""

    def _update(self, history: Series) -> None:
        """Condition on a longer ``history`` without re-estimating; the default refits."""
        self._fit(history)

    @abstractmethod
    def _predict(self, horizon: int) -> tuple[FloatArray, FloatArray]:
        """Point forecast and P90 for the ``horizon`` steps after `self.history`."""


def empirical_upper(errors: FloatArray, level: float = UPPER_QUANTILE) -> float:
    """The ``level`` quantile of forecast errors (actual − forecast), 0 when there are none."""
    return float(np.quantile(errors, level)) if errors.size else 0.0
