"""Replaying a demand series against an autoscaler: SLO violations, unserved demand, provisioned unit-hours.

Fluid model, one step at a time: at the start of step ``t`` the autoscaler sees the demand of steps
before ``t`` and sets the unit count. New units serve from ``startup_s`` later (a unit ready part-way
through a step serves that fraction of it); removed units stop at once, the not-yet-ready ones first.
Step ``t`` violates the SLO when its demand exceeds the capacity of the ready units; the excess is
counted as unserved (requests, or node-steps of demand without a powered node). Units are paid for from
the moment they are asked for (``provisioned_hours``). Every step whose unit count changes is one scaling
action. All policies start from the same state: enough ready units for the last step before the test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.errors import ConfigError
from skyline.scheduling.autoscaling.autoscaler import Autoscaler
from skyline.scheduling.autoscaling.target import ScalingTarget
from skyline.scheduling.forecasting.series import FloatArray, Series


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoscaleResult:
    """Totals over the simulated steps, and per step the units paid for and the capacity ready."""

    policy: str
    slo_violations: int
    unserved: float
    provisioned_hours: float
    scaling_actions: int
    units: FloatArray
    capacity: FloatArray

    def summary(self) -> dict[str, float | int]:
        """The JSON contract of ``skyline forecast autoscale``."""
        return {
            "slo_violations": self.slo_violations,
            "unserved": round(float(self.unserved), 6),
            "provisioned_hours": round(self.provisioned_hours, 6),
            "scaling_actions": self.scaling_actions,
        }


def simulate(
    series: Series, autoscaler: Autoscaler, target: ScalingTarget, *, start_step: int
) -> AutoscaleResult:
    """Run ``autoscaler`` over ``series`` from ``start_step`` (earlier steps are history only)."""
    if not 1 <= start_step < len(series):
        raise ConfigError(f"simulation start {start_step} must be within 1..{len(series) - 1}")
    step_s = series.step_s
    first_s = series.start_s + start_step * step_s
    ready_at = [first_s] * target.units_for(float(series.values[start_step - 1]))
    steps = len(series) - start_step
    units, capacity = np.zeros(steps), np.zeros(steps)
    violations, unserved, actions = 0, 0.0, 0
    for i, t in enumerate(range(start_step, len(series))):
        now_s = first_s + i * step_s
        wanted = target.clamp(autoscaler.decide(series.head(t), len(ready_at), target))
        if wanted != len(ready_at):
            actions += 1
            ready_at.sort()  # the ones asked for last (least ready) are dropped first
            ready_at = (
                ready_at[:wanted]
                if wanted < len(ready_at)
                else ready_at + [now_s + target.startup_s] * (wanted - len(ready_at))
            )
        ready_share = np.clip((now_s + step_s - np.array(ready_at)) / step_s, 0.0, 1.0)
        capacity[i] = float(ready_share.sum()) * target.capacity_per_step
        units[i] = len(ready_at)
        demand = float(series.values[t])
        if demand > capacity[i] + 1e-9:
            violations += 1
            unserved += demand - float(capacity[i])
    return AutoscaleResult(
        policy=autoscaler.name,
        slo_violations=violations,
        unserved=unserved,
        provisioned_hours=float(units.sum()) * step_s / 3600.0,
        scaling_actions=actions,
        units=units,
        capacity=capacity,
    )
