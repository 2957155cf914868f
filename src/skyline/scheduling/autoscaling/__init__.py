"""Predictive autoscaling: replicas or powered GPU nodes sized from a demand forecast, replayed on a series.

target = ScalingTarget.replicas(step_s=3600, service_time_s=29, latency_slo_s=60, startup_s=600)
result = simulate(series, PredictiveAutoscaler(make_forecaster("ensemble", horizon=2)), target,
                  start_step=len(series) - 192)
"""

from __future__ import annotations

from skyline.scheduling.autoscaling.autoscaler import (
    Autoscaler,
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    RollingForecasts,
    StaticAutoscaler,
)
from skyline.scheduling.autoscaling.hybrid import HybridAutoscaler, HybridStep
from skyline.scheduling.autoscaling.pareto import SweepPoint, dominated_share, dominates, plot_pareto, sweep
from skyline.scheduling.autoscaling.simulation import AutoscaleResult, simulate
from skyline.scheduling.autoscaling.target import ScalingTarget

__all__ = [
    "AutoscaleResult",
    "Autoscaler",
    "HybridAutoscaler",
    "HybridStep",
    "PredictiveAutoscaler",
    "ReactiveAutoscaler",
    "RollingForecasts",
    "ScalingTarget",
    "StaticAutoscaler",
    "SweepPoint",
    "dominated_share",
    "dominates",
    "plot_pareto",
    "simulate",
    "sweep",
]
