"""A synthetic request series for machines without the shared data: daily and weekly cycles, Poisson noise."""

from __future__ import annotations

import numpy as np

from skyline.scheduling.forecasting.series import DAY_S, Series

# 2024-01-01 00:00 UTC, a Monday: calendar features line up with day boundaries.
MONDAY_S = 1_704_067_200.0


def synthetic_requests(*, days: int, seed: int = 0, step_s: float = 3600.0, peak: float = 40.0) -> Series:
    """Requests per step: a daytime hump (zero at night), weekends at 40%, Poisson noise."""
    t = np.arange(round(days * DAY_S / step_s)) * step_s
    daily = np.clip(np.sin(2 * np.pi * (t / DAY_S - 0.25)), 0, None)
    weekend = np.where(((t // DAY_S) % 7) >= 5, 0.4, 1.0)
    values = np.random.default_rng(seed).poisson(peak * daily * weekend).astype(np.float64)
    return Series.of(values, step_s=step_s, start_s=MONDAY_S, name="synthetic-requests")
