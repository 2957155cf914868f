"""Comparing autoscalers the way "Serverless in the Wild" does: SLO violations against provisioned hours.

Each policy family is swept over its one knob (static: the unit count; reactive: the target utilisation;
predictive: the utilisation applied to the forecast P90 or point), giving a cloud of (provisioned hours,
violations) points per family. Family A Pareto-dominates family B when every point of B is matched by a
point of A with no more violations and no more hours, and strictly better in one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from skyline.scheduling.autoscaling.autoscaler import (
    Autoscaler,
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    RollingForecasts,
    StaticAutoscaler,
)
from skyline.scheduling.autoscaling.simulation import AutoscaleResult, simulate
from skyline.scheduling.autoscaling.target import ScalingTarget
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.series import Series

UTILISATIONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """One setting of one policy family and what it gave."""

    family: str
    setting: str
    result: AutoscaleResult

    def as_dict(self) -> dict[str, object]:
        return {"family": self.family, "setting": self.setting, **self.result.summary()}


def sweep(
    series: Series,
    target: ScalingTarget,
    *,
    start_step: int,
    forecaster: Callable[[], Forecaster],
    static_units: Sequence[int],
) -> list[SweepPoint]:
    """Simulate every family over its knob on the same series and start."""
    settings: list[tuple[str, str, Autoscaler]] = [
        ("static", f"units={u}", StaticAutoscaler(units=u)) for u in static_units
    ]
    settings += [("reactive", f"target={u}", ReactiveAutoscaler(target_utilisation=u)) for u in UTILISATIONS]
    shared = RollingForecasts(forecaster())  # the knob changes decisions, not forecasts: fit once
    settings += [
        ("predictive", f"{'p90' if upper else 'point'}/util={u}", _predictive(shared, upper, u))
        for upper in (True, False)
        for u in UTILISATIONS
    ]
    return [
        SweepPoint(family=f, setting=s, result=simulate(series, a, target, start_step=start_step))
        for f, s, a in settings
    ]


def _predictive(shared: RollingForecasts, upper: bool, utilisation: float) -> PredictiveAutoscaler:
    return PredictiveAutoscaler(shared, upper=upper, target_utilisation=utilisation)


def dominates(a: AutoscaleResult, b: AutoscaleResult) -> bool:
    """``a`` has no more violations and no more hours than ``b``, and fewer of one."""
    no_worse = a.slo_violations <= b.slo_violations and a.provisioned_hours <= b.provisioned_hours + 1e-9
    better = a.slo_violations < b.slo_violations or a.provisioned_hours < b.provisioned_hours - 1e-9
    return no_worse and better


def dominated_share(points: Sequence[SweepPoint], *, by: str, of: str) -> float:
    """The share of family ``of``'s points that some point of family ``by`` dominates."""
    challengers = [p.result for p in points if p.family == by]
    targets = [p.result for p in points if p.family == of]
    if not targets:
        return 0.0
    return sum(any(dominates(c, t) for c in challengers) for t in targets) / len(targets)


def plot_pareto(points: Sequence[SweepPoint], path: Path, *, title: str) -> Path:
    """Violations vs provisioned hours, one colour per family, its non-dominated points joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, marker in (("static", "s"), ("reactive", "o"), ("predictive", "^")):
        mine = sorted((p.result for p in points if p.family == family), key=lambda r: r.provisioned_hours)
        if not mine:
            continue
        ax.scatter(
            [r.provisioned_hours for r in mine], [r.slo_violations for r in mine], marker=marker, label=family
        )
        front = [r for r in mine if not any(dominates(o, r) for o in mine)]
        ax.plot([r.provisioned_hours for r in front], [r.slo_violations for r in front], alpha=0.6)
    ax.set_xlabel("provisioned unit-hours")
    ax.set_ylabel("steps violating the SLO")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
