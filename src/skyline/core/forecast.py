"""`DemandForecast`: predicted demand, as handed to policies and autoscalers through `ClusterState`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class DemandForecast:
    """A forecast of one series (GPUs busy, requests per interval, ...) from ``start_s`` in steps of ``step_s``.

    ``point[i]`` is the expected value of step ``i``; ``quantiles[0.9][i]`` its 90th percentile.
    """

    series: str
    start_s: float
    step_s: float
    point: tuple[float, ...]
    quantiles: Mapping[float, tuple[float, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.step_s <= 0:
            raise ConfigError(f"forecast step_s must be > 0, got {self.step_s}")
        if not all(math.isfinite(v) for v in self.point):
            raise ConfigError(f"forecast {self.series!r} has non-finite values")
        for q, values in self.quantiles.items():
            if not 0 < q < 1:
                raise ConfigError(f"forecast quantile levels must be in (0, 1), got {q}")
            if len(values) != len(self.point):
                raise ConfigError(
                    f"forecast {self.series!r}: quantile {q} has {len(values)} steps, point has {len(self.point)}"
                )
        object.__setattr__(self, "point", tuple(self.point))
        object.__setattr__(
            self, "quantiles", MappingProxyType({q: tuple(v) for q, v in self.quantiles.items()})
        )

    @property
    def horizon(self) -> int:
        return len(self.point)

    def at(self, t_s: float, *, quantile: float | None = None) -> float:
        """The forecast for the step containing time ``t_s`` (clamped to the horizon)."""
        values = self.point if quantile is None else self.quantiles[quantile]
        step = int((t_s - self.start_s) // self.step_s)
        return values[min(max(step, 0), len(values) - 1)]
