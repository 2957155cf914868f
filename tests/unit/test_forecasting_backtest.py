"""Backtests never see the future; metrics are hand-checked; series files are validated with clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.core.cluster import Cluster
from skyline.core.state import ClusterState
from skyline.errors import ConfigError, DataError
from skyline.scheduling.forecasting import BacktestConfig, Series, backtest, load_series, make_forecaster
from skyline.scheduling.forecasting.baselines import Persistence, seasonal_naive_daily
from skyline.scheduling.forecasting.metrics import accuracy, naive_scale
from skyline.scheduling.forecasting.state import forecasts_for
from skyline.testing.forecasting import RecordingForecaster, daily_sine, noisy_weekly

pytestmark = pytest.mark.unit


def test_accuracy_by_hand() -> None:
    actual, point, upper = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0])
    score = accuracy(actual, point, upper, scale=0.5)
    assert score.mae == pytest.approx(1.0)  # |0| + |1| + |2| over 3
    assert score.rmse == pytest.approx(math.sqrt(5 / 3))
    assert score.wmape == pytest.approx(3 / 6)
    assert score.mase == pytest.approx(2.0)
    assert score.p90_coverage == pytest.approx(2 / 3)
    zeros = accuracy(np.zeros(2), np.zeros(2), np.zeros(2), scale=1.0)
    assert math.isnan(zeros.wmape) and zeros.mae == 0.0  # all-zero actuals: wMAPE undefined, not infinite
    assert naive_scale(np.array([1.0, 3.0, 1.0, 3.0]), 2) == 0.0
    assert naive_scale(np.array([1.0, 3.0, 2.0]), 5) == pytest.approx(1.5)  # too short: lag 1


def test_origins_tile_the_test_part_and_each_fit_sees_only_the_past() -> None:
    series = daily_sine(days=4)  # 96 hourly steps
    recorder = RecordingForecaster(Persistence())
    result = backtest(series, recorder, BacktestConfig(horizon=6, test_steps=24, refit_every=12))
    assert result.origins == (72, 78, 84, 90)
    assert recorder.seen == [("fit", 72), ("update", 78), ("fit", 84), ("update", 90)]
    assert result.fits == 2
    assert np.array_equal(result.actual.ravel(), series.values[72:])
    # persistence from origin 72 repeats value 71 for six steps
    assert result.point[0] == pytest.approx([series.values[71]] * 6)


def test_partial_last_window_is_scored_only_where_actuals_exist() -> None:
    series = Series.of(np.arange(20.0), step_s=60)
    result = backtest(series, Persistence(), BacktestConfig(horizon=4, test_steps=6))
    assert result.origins == (14, 18)
    assert np.isnan(result.actual[1, 2:]).all()
    assert result.accuracy.mae == pytest.approx(np.mean([1, 2, 3, 4, 1, 2]))


@settings(max_examples=20, deadline=None)
@given(
    values=st.lists(st.floats(0, 1000, allow_nan=False), min_size=60, max_size=80),
    cut=st.integers(0, 19),
    horizon=st.integers(1, 5),
    noise=st.floats(-500, 500, allow_nan=False),
)
def test_no_forecast_depends_on_values_at_or_after_its_origin(
    values: list[float], cut: int, horizon: int, noise: float
) -> None:
    original = Series.of(values, step_s=3600)
    changed_values = np.array(values)
    first_test = len(values) - 20
    changed_values[first_test + cut :] += noise
    changed = Series.of(changed_values, step_s=3600)
    config = BacktestConfig(horizon=horizon, test_steps=20, refit_every=7)
    for model in (Persistence, seasonal_naive_daily):
        a, b = backtest(original, model(), config), backtest(changed, model(), config)
        for row, origin in enumerate(a.origins):
            if origin <= first_test + cut:
                # NaN marks steps past the end of the series, in both runs alike
                assert np.array_equal(a.point[row], b.point[row], equal_nan=True)
                assert np.array_equal(a.upper[row], b.upper[row], equal_nan=True)


@pytest.mark.parametrize("name", ["holt-winters", "gbdt", "ensemble"])
def test_fitted_models_do_not_peek_either(name: str) -> None:
    series = noisy_weekly(days=16)
    cut = len(series) - 12
    changed = Series.of(
        np.r_[series.values[:cut], series.values[cut:] * 3 + 50], step_s=series.step_s, start_s=series.start_s
    )
    config = BacktestConfig(horizon=6, test_steps=24, refit_every=12)
    a = backtest(series, make_forecaster(name, horizon=6), config)
    b = backtest(changed, make_forecaster(name, horizon=6), config)
    early = [row for row, origin in enumerate(a.origins) if origin <= cut]
    assert early and np.array_equal(a.point[early], b.point[early])
    assert not np.array_equal(a.point, b.point)  # later origins do see the change


def test_bad_backtest_configs() -> None:
    with pytest.raises(ConfigError, match="horizon"):
        BacktestConfig(horizon=0, test_steps=5)
    with pytest.raises(ConfigError, match="no history"):
        backtest(Series.of([1.0, 2.0], step_s=60), Persistence(), BacktestConfig(horizon=1, test_steps=2))


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "load.csv"
    path.write_text(text)
    return path


def test_value_series_gaps_are_interpolated_and_counted(tmp_path: Path) -> None:
    path = _csv(tmp_path, "time,v\n2024-01-01 00:00,10\n2024-01-01 00:10,20\n2024-01-01 00:40,50\n")
    loaded = load_series(path, time_col="time", value_col="v", agg="10min")
    assert loaded.series.values.tolist() == [10, 20, 30, 40, 50]
    assert loaded.gap_steps == 2
    assert loaded.series.step_s == 600 and loaded.series.start_s == 1_704_067_200


def test_event_counts_have_true_zeros(tmp_path: Path) -> None:
    rows = ["2024-01-01 00:05:00", "2024-01-01 00:05:00", "2024-01-01 00:59:59", "2024-01-01 03:00:00"]
    path = _csv(tmp_path, "t,x\n" + "\n".join(f"{r},a" for r in rows) + "\n")
    loaded = load_series(path, time_col="t", count=True, agg="1h")
    assert loaded.series.values.tolist() == [3, 0, 0, 1]  # duplicates are two requests, not an error
    assert loaded.gap_steps == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,v\n2024-01-01 00:10,1\n2024-01-01 00:00,2\n", "not sorted"),
        ("time,v\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n", "duplicate timestamp"),
        ("time,v\n2024-01-01 00:00,1\n2024-01-01 00:10,lots\n", "line 3, column v: 'lots' is not a number"),
        ("time,v\nyesterday,1\n", "not a timestamp"),
        ("when,v\n2024-01-01 00:00,1\n", "no column time"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises((DataError, ConfigError), match=message):
        load_series(_csv(tmp_path, text), time_col="time", value_col="v", agg="10min")


def test_bad_series_values_and_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="non-finite"):
        Series.of([1.0, float("nan")], step_s=60)
    with pytest.raises(DataError, match="non-numeric"):
        Series.of(["a", "b"], step_s=60)
    with pytest.raises(ConfigError, match="whole number"):
        Series.of([1.0], step_s=7 * 60).steps_per(86_400)
    path = _csv(tmp_path, "time,v\n2024-01-01 00:00,1\n")
    with pytest.raises(ConfigError, match="exactly one"):
        load_series(path, time_col="time", value_col="v", count=True)
    with pytest.raises(ConfigError, match="not a duration"):
        load_series(path, time_col="time", value_col="v", agg="often")


def test_a_forecast_reaches_policies_through_cluster_state() -> None:
    history = daily_sine(days=3)
    forecasts = forecasts_for({"requests": history}, model="seasonal-naive-daily", horizon=4)
    state = ClusterState(now_s=history.end_s, cluster=Cluster(nodes=()), forecasts=forecasts)
    forecast = state.forecasts["requests"]
    assert forecast.start_s == history.end_s and forecast.horizon == 4
    assert forecast.at(history.end_s + 3600, quantile=0.9) >= forecast.at(history.end_s + 3600)
    assert forecast.at(history.end_s) == pytest.approx(history.values[-24])
