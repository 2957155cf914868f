"""Handing forecasts to policies: one `DemandForecast` per named series, ready for `ClusterState.forecasts`."""

from __future__ import annotations

from collections.abc import Mapping

from skyline.core.forecast import DemandForecast
from skyline.scheduling.forecasting.registry import make_forecaster
from skyline.scheduling.forecasting.series import Series


def forecasts_for(histories: Mapping[str, Series], *, model: str, horizon: int) -> dict[str, DemandForecast]:
    """Fit ``model`` on each history and forecast ``horizon`` steps: ``ClusterState(forecasts=...)``."""
    forecasts = {}
    for name, history in histories.items():
        forecaster = make_forecaster(model, horizon=horizon)
        forecaster.fit(history)
        forecasts[name] = forecaster.predict(horizon)
    return forecasts
