"""Every registered forecaster honours the `Forecaster` contract on the same synthetic request series."""

from __future__ import annotations

import math

import pytest

from skyline.core.forecast import DemandForecast
from skyline.errors import ConfigError, DataError
from skyline.scheduling.forecasting import FORECASTERS, UPPER_QUANTILE, make_forecaster
from skyline.testing.forecasting import noisy_weekly

pytestmark = pytest.mark.unit

HORIZON = 6
SERIES = noisy_weekly(days=16)  # hourly requests with zeros: 384 steps


@pytest.fixture(scope="module", params=sorted(FORECASTERS))
def fitted(request: pytest.FixtureRequest) -> tuple[str, object]:
    forecaster = make_forecaster(request.param, horizon=HORIZON)
    forecaster.fit(SERIES.head(len(SERIES) - 12))
    return request.param, forecaster


def test_predict_returns_a_demand_forecast_starting_at_the_history_end(fitted: tuple[str, object]) -> None:
    name, forecaster = fitted
    forecast = forecaster.predict(HORIZON)  # type: ignore[attr-defined]
    assert isinstance(forecast, DemandForecast)
    assert forecast.horizon == HORIZON
    assert forecast.step_s == SERIES.step_s
    assert forecast.start_s == SERIES.head(len(SERIES) - 12).end_s
    upper = forecast.quantiles[UPPER_QUANTILE]
    assert all(math.isfinite(v) and v >= 0 for v in forecast.point), name  # counts: never negative
    assert all(u >= p for u, p in zip(upper, forecast.point, strict=True)), name


def test_update_moves_the_forecast_origin_without_refitting(fitted: tuple[str, object]) -> None:
    _, forecaster = fitted
    forecaster.update(SERIES.head(len(SERIES) - 6))  # type: ignore[attr-defined]
    forecast = forecaster.predict(3)  # type: ignore[attr-defined]
    assert forecast.start_s == SERIES.head(len(SERIES) - 6).end_s and forecast.horizon == 3
    with pytest.raises(ConfigError, match="extended"):
        forecaster.update(SERIES.head(10))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_misuse_is_a_clear_error(name: str) -> None:
    forecaster = make_forecaster(name, horizon=HORIZON)
    with pytest.raises(ConfigError, match="not fitted"):
        forecaster.predict(1)
    with pytest.raises(DataError):
        forecaster.fit(SERIES.head(1))
