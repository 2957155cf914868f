"""`ScalingTarget`: what is scaled (inference replicas or GPU nodes), how much one unit serves, how fast it starts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingTarget:
    """One unit (a replica, a node) serves ``capacity_per_step`` demand units per step within the SLO.

    A unit asked for at time τ serves from ``τ + startup_s`` on (model load, node boot) and is paid for from
    τ. ``min_units``/``max_units`` bound every decision (``max_units`` None: unbounded).
    """

    capacity_per_step: float
    startup_s: float
    min_units: int = 0
    max_units: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_per_step) and self.capacity_per_step > 0):
            raise ConfigError(f"capacity per unit must be > 0, got {self.capacity_per_step}")
        if not (math.isfinite(self.startup_s) and self.startup_s >= 0):
            raise ConfigError(f"startup_s must be ≥ 0, got {self.startup_s}")
        if self.min_units < 0 or (self.max_units is not None and self.max_units < max(self.min_units, 1)):
            raise ConfigError(
                f"units must satisfy 0 ≤ min_units ≤ max_units, max_units ≥ 1; got {self.min_units}, {self.max_units}"
            )

    @classmethod
    def replicas(
        cls,
        *,
        step_s: float,
        service_time_s: float,
        latency_slo_s: float,
        startup_s: float,
        max_units: int | None = None,
    ) -> ScalingTarget:
        """Inference replicas: a replica is an M/M/1 server with mean service time ``service_time_s``.

        Its mean response time S/(1 − ρ) stays within the latency SLO L while the utilisation ρ ≤ 1 − S/L,
        so within the SLO one replica serves ρ_max · step_s / S requests per step.
        """
        if not (service_time_s > 0 and latency_slo_s > service_time_s):
            raise ConfigError(
                f"latency SLO ({latency_slo_s} s) must exceed the service time ({service_time_s} s) and both be > 0"
            )
        utilisation = 1.0 - service_time_s / latency_slo_s
        return cls(
            capacity_per_step=utilisation * step_s / service_time_s,
            startup_s=startup_s,
            min_units=1,
            max_units=max_units,
        )

    @classmethod
    def nodes(cls, *, boot_s: float, total_nodes: int | None = None) -> ScalingTarget:
        """GPU nodes powered on (Helios CES): demand is in active nodes, one node serves one, booting takes ``boot_s``."""
        return cls(capacity_per_step=1.0, startup_s=boot_s, min_units=0, max_units=total_nodes)

    def clamp(self, units: int) -> int:
        upper = units if self.max_units is None else min(units, self.max_units)
        return max(self.min_units, upper)

    def units_for(self, demand: float, *, utilisation: float = 1.0) -> int:
        """The fewest units that serve ``demand`` per step at ``utilisation`` of their SLO capacity."""
        needed = max(demand, 0.0) / (self.capacity_per_step * utilisation)
        return self.clamp(math.ceil(needed - 1e-9))
