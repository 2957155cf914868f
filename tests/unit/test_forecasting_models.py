"""Forecasters on synthetic series whose answers are known: a daily sine, a step, a linear trend."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from skyline.errors import ConfigError, DataError, NotFoundError
from skyline.scheduling.forecasting import FORECASTERS, make_forecaster, parse_models
from skyline.scheduling.forecasting.auto import Auto
from skyline.scheduling.forecasting.holt_winters import HoltWinters
from skyline.scheduling.forecasting.registry import AUTO_CANDIDATES
from skyline.scheduling.forecasting.series import Series
from skyline.testing.forecasting import daily_sine, linear_trend, step_change

pytestmark = pytest.mark.unit


def _forecast(name: str, history: Series, horizon: int) -> np.ndarray:
    forecaster = make_forecaster(name, horizon=horizon)
    forecaster.fit(history)
    return np.array(forecaster.predict(horizon).point)


def test_seasonal_naive_daily_repeats_a_pure_daily_sine_exactly() -> None:
    series = daily_sine(days=10)
    history, future = series.head(24 * 9), series.values[24 * 9 :]
    assert _forecast("seasonal-naive-daily", history, 24) == pytest.approx(future, abs=1e-9)
    # a week of a daily cycle is also a whole number of days: weekly naive is exact too
    assert _forecast("seasonal-naive-weekly", history, 24) == pytest.approx(future, abs=1e-9)


@pytest.mark.parametrize(("name", "tolerance"), [("holt-winters", 0.5), ("sarima", 1.0), ("gbdt", 4.0)])
def test_seasonal_models_learn_a_daily_sine(name: str, tolerance: float) -> None:
    series = daily_sine(days=10)  # amplitude 20: persistence errs by up to 40 over a day
    forecast = _forecast(name, series.head(24 * 9), 24)
    assert np.max(np.abs(forecast - series.values[24 * 9 :])) < tolerance


def test_persistence_after_a_step_forecasts_the_new_level() -> None:
    history = step_change(before=30, after=5)
    assert _forecast("persistence", history, 6) == pytest.approx([30.0] * 6)


def test_persistence_on_a_trend_lags_by_slope_times_lead() -> None:
    series = linear_trend(steps=60, slope=0.5)
    forecast = _forecast("persistence", series.head(50), 4)
    assert series.values[50:54] - forecast == pytest.approx([0.5, 1.0, 1.5, 2.0])


@pytest.mark.parametrize("name", ["holt-winters", "gbdt"])
def test_trend_following_models_extend_a_linear_trend(name: str) -> None:
    series = linear_trend(steps=24 * 5, slope=0.5)
    forecast = _forecast(name, series.head(24 * 5 - 6), 6)
    assert np.max(np.abs(forecast - series.values[-6:])) < 0.6  # persistence would be up to 3.0 off


def test_holt_winters_update_matches_statsmodels_recursion() -> None:
    series = daily_sine(days=20)
    noisy = Series.of(
        series.values + np.random.default_rng(1).normal(0, 1, len(series)), step_s=series.step_s
    )
    model = HoltWinters()
    model.fit(noisy.head(400))
    reference = ExponentialSmoothing(
        noisy.values[:400],
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=24,
        initialization_method="estimated",
    ).fit()
    assert model.predict(5).point == pytest.approx(reference.forecast(5), rel=1e-6)
    # update() runs the same recursion over new steps: equal to statsmodels' with the parameters fixed
    model.update(noisy.head(430))
    fixed = ExponentialSmoothing(
        noisy.values[:430],
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=24,
        initialization_method="known",
        initial_level=reference.params["initial_level"],
        initial_trend=reference.params["initial_trend"],
        initial_seasonal=reference.params["initial_seasons"],
    ).fit(
        smoothing_level=reference.params["smoothing_level"],
        smoothing_trend=reference.params["smoothing_trend"],
        smoothing_seasonal=reference.params["smoothing_seasonal"],
        damping_trend=reference.params["damping_trend"],
        optimized=False,
    )
    assert model.predict(5).point == pytest.approx(fixed.forecast(5), rel=1e-6)


def test_auto_picks_an_exact_model_on_a_pure_sine() -> None:
    auto = Auto(candidates=AUTO_CANDIDATES, horizon=6)
    auto.fit(daily_sine(days=12))
    assert auto.chosen is not None and auto.chosen.name.startswith("seasonal-naive")
    assert auto.scores[auto.chosen.name] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("name", "steps"),
    [("seasonal-naive-daily", 12), ("seasonal-naive-weekly", 144), ("holt-winters", 36), ("sarima", 36)],
)
def test_a_history_shorter_than_the_season_is_a_clear_error(name: str, steps: int) -> None:
    with pytest.raises(DataError, match="needs at least"):
        make_forecaster(name, horizon=1).fit(daily_sine(days=7).head(steps))


def test_forecasts_of_counts_are_never_negative() -> None:
    history = Series.of([5, 4, 3, 2, 1, 0, 0, 0, 0, 0], step_s=3600)
    forecaster = make_forecaster("gbdt", horizon=3)
    forecaster.fit(Series.of(np.r_[np.arange(40, 0, -1), history.values], step_s=3600))
    assert min(forecaster.predict(3).point) >= 0


def test_registry_names_and_errors() -> None:
    assert {
        "persistence",
        "seasonal-naive-daily",
        "seasonal-naive-weekly",
        "holt-winters",
        "sarima",
        "gbdt",
        "auto",
    } <= set(FORECASTERS)
    assert parse_models(" persistence, gbdt ") == ["persistence", "gbdt"]
    with pytest.raises(NotFoundError, match="choose from"):
        make_forecaster("prophet", horizon=1)
    with pytest.raises(NotFoundError, match="prophet"):
        parse_models("persistence,prophet")
    with pytest.raises(ConfigError):
        parse_models(" , ")
    with pytest.raises(ConfigError, match="not fitted"):
        make_forecaster("persistence", horizon=1).predict(1)
