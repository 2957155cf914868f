"""The work behind `skyline forecast autoscale`: build the target and policies, simulate, sweep, draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyline.scheduling.autoscaling import (
    Autoscaler,
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    ScalingTarget,
    StaticAutoscaler,
    dominated_share,
    plot_pareto,
    simulate,
    sweep,
)
from skyline.scheduling.forecasting import Series, make_forecaster


def build_target(
    series: Series,
    *,
    capacity: float | None,
    service_time_s: float,
    latency_slo_s: float,
    startup_s: float,
    max_units: int | None,
) -> ScalingTarget:
    if capacity is not None:
        return ScalingTarget(capacity_per_step=capacity, startup_s=startup_s, max_units=max_units)
    return ScalingTarget.replicas(
        step_s=series.step_s,
        service_time_s=service_time_s,
        latency_slo_s=latency_slo_s,
        startup_s=startup_s,
        max_units=max_units,
    )


def build_policy(name: str, *, model: str, lead_steps: int) -> Autoscaler:
    if name == "predictive":
        return PredictiveAutoscaler(make_forecaster(model, horizon=lead_steps + 1))
    if name == "reactive":
        return ReactiveAutoscaler()
    return StaticAutoscaler()


def run_autoscale(
    series: Series,
    *,
    policies: Sequence[str],
    compare: bool,
    model: str,
    test_steps: int,
    capacity: float | None,
    service_time_s: float,
    latency_slo_s: float,
    startup_s: float,
    max_units: int | None,
    plot: Path | None,
) -> dict[str, Any]:
    """``{"policies": {name: summary}}``; with ``compare`` also the sweep, its dominance and the plot."""
    target = build_target(
        series,
        capacity=capacity,
        service_time_s=service_time_s,
        latency_slo_s=latency_slo_s,
        startup_s=startup_s,
        max_units=max_units,
    )
    start = len(series) - test_steps
    lead_steps = int(-(-target.startup_s // series.step_s))
    payload: dict[str, Any] = {"policies": {}}
    for name in policies:
        policy = build_policy(name, model=model, lead_steps=lead_steps)
        payload["policies"][name] = simulate(series, policy, target, start_step=start).summary()
    if compare:
        peak = target.units_for(float(series.values[:start].max()))
        points = sweep(
            series,
            target,
            start_step=start,
            forecaster=lambda: make_forecaster(model, horizon=lead_steps + 1),
            static_units=sorted({max(1, round(peak * f)) for f in (0.25, 0.5, 0.75, 1.0)}),
        )
        payload["pareto"] = [p.as_dict() for p in points]
        payload["dominated_share"] = dominated_share(points, by="predictive", of="reactive")
        if plot is not None:
            plot_pareto(points, plot, title=f"{series.name}: autoscalers on the last {test_steps} steps")
    return payload
