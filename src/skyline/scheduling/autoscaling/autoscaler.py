"""`Autoscaler`: the interface (one decision per step from the demand seen so far) and the three kinds.

* `StaticAutoscaler`: a fixed number of units, by default enough for a high percentile of past demand.
* `ReactiveAutoscaler`: Kubernetes-HPA-like. desired = ⌈current · utilisation / target⌉ from the last
  step's demand, kept when within a 10% tolerance; scale-down takes the highest recommendation of the
  stabilisation window, scale-up is immediate (the HPA's default behaviour).
* `PredictiveAutoscaler`: sizes for a forecast quantile of demand over the steps until a unit asked for now
  is ready (its start-up lead time), so capacity is there when the demand arrives; releases units as soon
  as the forecast allows.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque

import numpy as np

from skyline.errors import ConfigError
from skyline.scheduling.autoscaling.target import ScalingTarget
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.series import WEEK_S, FloatArray, Series


class Autoscaler(ABC):
    """Decides, at the start of each step, how many units to run; sees only the demand of earlier steps."""

    name: str

    @abstractmethod
    def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
        """Units wanted from now on, given ``history`` (demand before now) and ``current`` units."""


class StaticAutoscaler(Autoscaler):
    """Always ``units``; when None, enough for the ``percentile`` of the demand before the first decision."""

    name = "static"

    def __init__(self, *, units: int | None = None, percentile: float = 95.0) -> None:
        if units is not None and units < 0:
            raise ConfigError(f"static units must be ≥ 0, got {units}")
        if not 0 < percentile <= 100:
            raise ConfigError(f"static percentile must be in (0, 100], got {percentile}")
        self.units, self.percentile = units, percentile

    def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
        if self.units is None:
            self.units = target.units_for(float(np.percentile(history.values, self.percentile)))
        return target.clamp(self.units)


class ReactiveAutoscaler(Autoscaler):
    """HPA-like: target utilisation, 10% tolerance, scale-down stabilisation over ``window_steps`` steps."""

    name = "reactive"

    def __init__(
        self, *, target_utilisation: float = 0.7, window_steps: int = 3, tolerance: float = 0.1
    ) -> None:
        if not 0 < target_utilisation <= 1:
            raise ConfigError(f"target utilisation must be in (0, 1], got {target_utilisation}")
        if window_steps < 1:
            raise ConfigError(f"stabilisation window must be ≥ 1 step, got {window_steps}")
        self.target_utilisation, self.tolerance = target_utilisation, tolerance
        self._recent: deque[int] = deque(maxlen=window_steps)

    def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
        demand = float(history.values[-1])
        if current > 0:
            utilisation = demand / (current * target.capacity_per_step)
            ratio = utilisation / self.target_utilisation
            within = abs(ratio - 1.0) <= self.tolerance
            recommended = current if within else target.clamp(math.ceil(current * ratio - 1e-9))
        else:  # from zero the ratio is undefined: size directly for the demand seen
            recommended = target.units_for(demand, utilisation=self.target_utilisation)
        self._recent.append(recommended)
        return recommended if recommended >= current else max(self._recent)


class RollingForecasts:
    """A forecaster driven step by step: re-estimated every ``refit_every`` steps, conditioned in between.

    Forecasts are cached by history length, so several predictive settings replayed over the same series
    (a Pareto sweep) share one set of fits.
    """

    def __init__(self, forecaster: Forecaster, *, refit_every: int | None = None) -> None:
        if refit_every is not None and refit_every < 1:
            raise ConfigError(f"refit_every must be ≥ 1 step, got {refit_every}")
        self.forecaster, self.refit_every = forecaster, refit_every
        self._fitted_at: int | None = None
        self._cache: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}

    def at(self, history: Series, horizon: int) -> tuple[FloatArray, FloatArray]:
        """(point, P90) for the ``horizon`` steps after ``history``."""
        key = (len(history), horizon)
        if key not in self._cache:
            every = self.refit_every or max(round(WEEK_S / history.step_s), 1)
            if self._fitted_at is None or not 0 <= len(history) - self._fitted_at < every:
                self.forecaster.fit(history)
                self._fitted_at = len(history)
            else:
                self.forecaster.update(history)
            self._cache[key] = self.forecaster.predict_arrays(horizon)
        return self._cache[key]

    def forget(self) -> None:
        """Drop the cached forecasts (a live loop, which never decides on a past step again, calls this
        after each decision so that the cache does not grow for as long as the service runs)."""
        self._cache.clear()


class PredictiveAutoscaler(Autoscaler):
    """Sizes for the forecast P90 (``upper``; else the point forecast) over the start-up lead time.

    ``forecasts`` is a forecaster (re-estimated weekly, conditioned on new data every step) or a
    `RollingForecasts` shared with other autoscalers.
    """

    name = "predictive"

    def __init__(
        self,
        forecasts: Forecaster | RollingForecasts,
        *,
        upper: bool = True,
        target_utilisation: float = 1.0,
    ) -> None:
        if not 0 < target_utilisation <= 1:
            raise ConfigError(f"target utilisation must be in (0, 1], got {target_utilisation}")
        self.forecasts = forecasts if isinstance(forecasts, RollingForecasts) else RollingForecasts(forecasts)
        self.upper, self.target_utilisation = upper, target_utilisation

    def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
        # A unit asked for now is ready `startup_s` later: cover every step until then, and the one after.
        lead_steps = math.ceil(target.startup_s / history.step_s - 1e-9)
        point, p90 = self.forecasts.at(history, lead_steps + 1)
        demand = p90 if self.upper else point
        return max(target.units_for(float(d), utilisation=self.target_utilisation) for d in demand)
