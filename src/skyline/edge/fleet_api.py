"""HTTP routes of the fleet: what each agent should run, the fleet's state, staged rollouts.

- ``GET /v1/fleet/agents/{agent}/models/{model}`` → ``{"version": V | null}``, the agent's desired
  version (read on ``repository``; an ``edge`` token asks only for its own agent, `speaks_for`);
- ``GET /v1/fleet`` → every agent with labels, version served and desired, health, uplink backlog;
- ``POST /v1/rollouts`` (``update`` on ``repository``: admin) starts a rollout, ``GET /v1/rollouts[/{id}]``
  (a metrics reader) shows them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from skyline.edge.fleet import AgentRecord, FleetStore
from skyline.edge.rollout import RolloutController, RolloutSpec
from skyline.errors import PermissionDeniedError
from skyline.security.rbac import Principal, Role, authorize
from skyline.serving.repository import ModelRepository, check_model_name

OFFLINE_AFTER_S = 30.0  # an agent that has not reported for this long is listed offline
# Roles whose token stands for one machine: it speaks only for the agent named by its subject.
_MACHINE_ROLES = frozenset({Role.EDGE, Role.AGENT})


def speaks_for(who: Principal, agent: str) -> None:
    """Refuse (403) a device's token that speaks for another agent than its own.

    An agent's token is issued to its name (``skyline token create --role edge --subject NAME``); a rollout
    decides on what agents report about themselves (telemetry, versions, labelled records), so a token
    that could report for another agent could forge a canary's statistics or block a rollout. People's
    roles (admin, operator, viewer) are bounded by the permission table alone."""
    if who.role in _MACHINE_ROLES and who.subject != agent:
        raise PermissionDeniedError(
            f"this token speaks for agent {who.subject!r}, not {agent!r}; give each agent its own token: "
            f"skyline token create --role edge --subject {agent}"
        )


class RolloutIn(BaseModel):
    model: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)
    canary: float = Field(default=0.1, gt=0, le=1)
    steps: list[float] = Field(default_factory=lambda: [0.1, 0.5, 1.0], min_length=1, max_length=20)
    max_error_increase: float = Field(default=0.05, ge=0)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    max_latency_increase_ms: float | None = Field(default=None, ge=0)
    min_samples: int = Field(default=20, ge=1)
    bake_s: float = Field(default=30.0, ge=0)
    wave_timeout_s: float = Field(default=600.0, gt=0)
    offline_after_s: float = Field(default=OFFLINE_AFTER_S, gt=0)
    selector: dict[str, str] = Field(default_factory=dict, max_length=16)


def agent_view(
    agent: AgentRecord, fleet: FleetStore, versions: dict[str, list[int]], now: float
) -> dict[str, Any]:
    """One row of ``skyline edge fleet``."""
    online = now - agent.last_seen <= OFFLINE_AFTER_S
    metrics = agent.metrics
    health = "offline" if not online else "ok" if metrics.get("ready", True) else "syncing"
    return {
        "agent": agent.name,
        "labels": dict(agent.labels),
        "health": health,
        "last_seen_s_ago": round(now - agent.last_seen, 1),
        "models": {
            model: {
                "version": agent.version(model),
                "desired": fleet.desired(agent.name, model, versions.get(model, [])),
            }
            for model in agent.models
        },
        "uplink_backlog": metrics.get("uplink_queued"),
        "answered": metrics.get("answered"),
        "degraded": metrics.get("degraded"),
    }


def fleet_routes(
    app: FastAPI, repository: Path, fleet: FleetStore, controller: RolloutController, allowed: Any
) -> None:
    """Add the fleet and rollout routes to ``app``."""
    read_repository, read_metrics = allowed("read", "repository"), allowed("read", "metrics")

    def versions(model: str) -> list[int]:
        return ModelRepository(repository).versions(check_model_name(model))

    @app.get("/v1/fleet/agents/{agent}/models/{model}")
    def desired(agent: str, model: str, who: Principal = read_repository) -> dict[str, int | None]:
        authorize(who, "read", "repository", model=model)
        speaks_for(who, agent)
        return {"version": fleet.desired(agent, model, versions(model))}

    @app.get("/v1/fleet", dependencies=[read_metrics])
    def fleet_view() -> list[dict[str, Any]]:
        agents = fleet.agents()
        names = {model for agent in agents for model in agent.models}
        found = {model: versions(model) for model in names}
        now = time.time()
        return [agent_view(agent, fleet, found, now) for agent in agents]

    @app.post("/v1/rollouts", dependencies=[allowed("update", "repository")])
    def start(item: RolloutIn) -> dict[str, Any]:
        fields = item.model_dump()
        fields["steps"] = tuple(fields["steps"])
        spec = RolloutSpec(**fields)  # a ConfigError is a 422 with its one-line reason
        return controller.create(spec, versions(spec.model)).to_json()

    @app.get("/v1/rollouts", dependencies=[read_metrics])
    def rollouts() -> list[dict[str, Any]]:
        return [r.to_json() for r in fleet.rollouts()]

    @app.get("/v1/rollouts/{rollout_id}", dependencies=[read_metrics])
    def rollout(rollout_id: int) -> dict[str, Any]:
        return fleet.rollout(rollout_id).to_json()
