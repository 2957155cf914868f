"""Forecast accuracy: MAE, RMSE, wMAPE, MASE and P90 coverage (no sMAPE/MAPE: load series have zeros).

wMAPE = Σ|error| / Σ|actual| (defined whenever the actuals are not all zero, unlike MAPE). MASE divides the
MAE by the in-sample MAE of the seasonal-naive forecast on the training part (Hyndman & Koehler, 2006),
so MASE < 1 means better than repeating the last season. P90 coverage is the share of actuals at or below
the forecast's 90th percentile; a calibrated P90 covers about 0.9.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from skyline.errors import ConfigError
from skyline.scheduling.forecasting.series import FloatArray


@dataclass(frozen=True, slots=True, kw_only=True)
class Accuracy:
    """The accuracy of one model over a test part; NaN where a metric is undefined (see the module doc)."""

    mae: float
    rmse: float
    wmape: float
    mase: float
    p90_coverage: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def naive_scale(training: FloatArray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast (lag ``season``, or lag 1 if too short): MASE's scale."""
    lag = season if len(training) > season else 1
    if len(training) <= lag:
        return math.nan
    return float(np.mean(np.abs(training[lag:] - training[:-lag])))


def accuracy(actual: FloatArray, point: FloatArray, upper: FloatArray, *, scale: float) -> Accuracy:
    """Metrics of forecasts ``point`` (and P90 ``upper``) against ``actual``, arrays of the same shape."""
    if actual.shape != point.shape or actual.shape != upper.shape or actual.size == 0:
        raise ConfigError(
            f"accuracy needs equal, non-empty shapes; got {actual.shape}, {point.shape}, {upper.shape}"
        )
    error = actual - point
    mae = float(np.mean(np.abs(error)))
    total = float(np.sum(np.abs(actual)))
    return Accuracy(
        mae=mae,
        rmse=float(np.sqrt(np.mean(error**2))),
        wmape=float(np.sum(np.abs(error)) / total) if total > 0 else math.nan,
        mase=mae / scale if scale > 0 else math.nan,
        p90_coverage=float(np.mean(actual <= upper)),
    )
