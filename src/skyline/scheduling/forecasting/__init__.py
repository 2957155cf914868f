"""Demand forecasting: one `Forecaster` interface, one registry (`FORECASTERS`), a rolling-origin backtest.

series = load_series("load.csv", time_col="time", value_col="active", agg="10min").series
result = backtest(series, make_forecaster("gbdt", horizon=6), BacktestConfig(horizon=6, test_steps=2016))
state = ClusterState(..., forecasts={"gpu-nodes": forecaster.predict(6)})   # what policies read
"""

from __future__ import annotations

from skyline.scheduling.forecasting.backtest import BacktestConfig, BacktestResult, backtest
from skyline.scheduling.forecasting.forecaster import UPPER_QUANTILE, Forecaster
from skyline.scheduling.forecasting.loading import LoadedSeries, load_series
from skyline.scheduling.forecasting.metrics import Accuracy
from skyline.scheduling.forecasting.registry import FORECASTERS, make_forecaster, parse_models
from skyline.scheduling.forecasting.series import Series

__all__ = [
    "FORECASTERS",
    "UPPER_QUANTILE",
    "Accuracy",
    "BacktestConfig",
    "BacktestResult",
    "Forecaster",
    "LoadedSeries",
    "Series",
    "backtest",
    "load_series",
    "make_forecaster",
    "parse_models",
]
