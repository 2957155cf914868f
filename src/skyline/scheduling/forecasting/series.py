"""`Series`: a demand series on a regular time grid (one value per step), validated once at the edge.

Every forecaster, the backtest and the autoscaling simulator work on this one shape: ``values[i]`` is the
demand of the interval that starts at ``start_s + i * step_s`` (Unix seconds, UTC). Gaps are filled
before a `Series` exists (see `skyline.scheduling.forecasting.loading`), so values are always finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Series:
    """``values`` (float64, finite, read-only) at ``start_s + i * step_s``; ``name`` says what it counts."""

    name: str
    start_s: float
    step_s: float
    values: FloatArray

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise ConfigError(f"series {self.name!r}: step_s must be > 0, got {self.step_s}")
        if not math.isfinite(self.start_s):
            raise ConfigError(f"series {self.name!r}: start_s must be finite, got {self.start_s}")
        try:
            values = np.array(self.values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"series {self.name!r} has non-numeric values ({exc}); pass numbers only"
            ) from None
        if values.ndim != 1:
            raise DataError(f"series {self.name!r} must be one-dimensional, got shape {values.shape}")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(
                f"series {self.name!r} has {bad.size} non-finite values (first at step {int(bad[0])}); "
                "fill gaps before building a Series (the CSV loader interpolates them)"
            )
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @classmethod
    def of(
        cls,
        values: npt.ArrayLike,
        *,
        step_s: float,
        start_s: float = 0.0,
        name: str = "series",
    ) -> Series:
        """Build a series from plain numbers (tests, examples, synthetic traces)."""
        return cls(name=name, start_s=start_s, step_s=step_s, values=values)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end_s(self) -> float:
        """The start of the interval just after the last value: where a forecast begins."""
        return self.start_s + len(self) * self.step_s

    def times_s(self, first: int = 0, count: int | None = None) -> FloatArray:
        """Start times (Unix seconds) of steps ``first .. first + count - 1`` (may run past the end)."""
        n = len(self) - first if count is None else count
        return self.start_s + self.step_s * np.arange(first, first + n, dtype=np.float64)

    def head(self, n: int) -> Series:
        """The first ``n`` values: the history as it was known at step ``n`` (nothing later)."""
        if not 0 <= n <= len(self):
            raise ConfigError(f"series {self.name!r}: cannot take the first {n} of {len(self)} values")
        # A read-only view of already validated values: no copy, no re-validation (backtests call this
        # once per origin on series of 50k+ steps).
        head = object.__new__(Series)
        for name, value in (("name", self.name), ("start_s", self.start_s), ("step_s", self.step_s)):
            object.__setattr__(head, name, value)
        object.__setattr__(head, "values", self.values[:n])
        return head

    def tail_from(self, first: int) -> Series:
        """The values from step ``first`` on, with the start time moved accordingly."""
        if not 0 <= first < len(self):
            raise ConfigError(f"series {self.name!r}: cannot start at step {first} of {len(self)}")
        return Series(
            name=self.name,
            start_s=self.start_s + first * self.step_s,
            step_s=self.step_s,
            values=self.values[first:],
        )

    def steps_per(self, period_s: float) -> int:
        """How many steps make ``period_s`` (a day, a week); the period must be a whole number of steps."""
        steps = period_s / self.step_s
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ConfigError(
                f"series {self.name!r}: a period of {period_s:g} s is not a whole number of "
                f"{self.step_s:g} s steps; aggregate to a step that divides it (e.g. 10min or 1h)"
            )
        return round(steps)

    def require_length(self, needed: int, *, why: str) -> None:
        """Raise a clear error when the history is too short for a model (``why`` names the model)."""
        if len(self) < needed:
            raise DataError(
                f"series {self.name!r} has {len(self)} steps of {self.step_s:g} s, {why} needs at least "
                f"{needed}; give a longer history or a model with a shorter season"
            )

    @property
    def nonnegative(self) -> bool:
        """True for counts and capacities: forecasts are then clipped at zero."""
        return bool(len(self) == 0 or self.values.min() >= 0)
