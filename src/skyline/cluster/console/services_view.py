"""What the console shows of inference services (`skyline.cluster.service_plane`): each service's replica
counts, the autoscaler's recorded decisions (observed demand, forecast, each rule's count, the target and
why) and the forecast the scheduler reads (its point and upper band, in replicas)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skyline.cluster.console.session import owner_scope
from skyline.security.rbac import Principal

if TYPE_CHECKING:
    from skyline.cluster.service_plane import ServicePlane
    from skyline.core import DemandForecast

DECISIONS_SHOWN = 20
DECISIONS_CHARTED = 240


def service_rows(plane: ServicePlane | None, principal: Principal) -> list[dict[str, Any]]:
    """Each service the principal may read: name, model, ready / desired replicas, autoscale mode."""
    if plane is None:
        return []
    return [plane.summary(r) for r in plane.store.services.find(owner=owner_scope(principal))]


def served_by(plane: ServicePlane | None) -> dict[str, list[str]]:
    """``"model:version"`` → the services serving it (as their spec names it)."""
    out: dict[str, list[str]] = {}
    if plane is None:
        return out
    for record in plane.store.services.find():
        if record.spec.model:
            ready = plane.controller.ready_counts.get(record.name, 0)
            out.setdefault(record.spec.model, []).append(
                f"service {record.name} ({ready}/{record.desired} ready)"
            )
    return out


def scaling_panels(plane: ServicePlane | None, principal: Principal) -> list[dict[str, Any]]:
    """Per service: its summary, its last decisions, and the series its two charts draw."""
    if plane is None:
        return []
    forecasts = plane.forecasts()
    panels = []
    for record in plane.store.services.find(owner=owner_scope(principal)):
        decisions = plane.store.services.decisions(record.id, limit=DECISIONS_CHARTED)
        panels.append({
            "summary": plane.summary(record),
            "decisions": decisions[-DECISIONS_SHOWN:][::-1],
            "demand": {
                "labels": ["observed requests per step", "forecast (P90, over the lead)"],
                "rows": [[d["at_s"], d["observed"], d["forecast"]] for d in decisions],
            },
            "replicas": replica_chart(decisions, forecasts.get(f"service:{record.name}")),
        })  # fmt: skip
    return panels


def replica_chart(decisions: list[dict[str, Any]], forecast: DemandForecast | None) -> dict[str, Any]:
    """Replicas the autoscaler had and wanted, then the forecast ahead (point and upper band)."""
    rows: list[list[float | None]] = [[d["at_s"], d["current"], d["target"], None, None] for d in decisions]
    labels = ["replicas", "target", "forecast", "forecast upper band"]
    if forecast is not None:
        upper = next(iter(forecast.quantiles.values()), forecast.point)
        level = next(iter(forecast.quantiles), None)
        if level is not None:
            labels[3] = f"forecast P{round(level * 100)}"
        for i, (point, high) in enumerate(zip(forecast.point, upper, strict=True)):
            at = forecast.start_s + (i + 1) * forecast.step_s
            if not rows or at > (rows[-1][0] or 0):
                rows.append([at, None, None, point, high])
    return {"labels": labels, "rows": rows, "band": [3, 4]}
