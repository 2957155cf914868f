"""The services' REST API: deploy, list, status, scale, update, delete, decisions and telemetry history.

Authorization is that of jobs (a service is a job kind): operators deploy and manage their own services;
viewers read. Bodies are bounded pydantic models turned into a `ServiceSpec` at once (an invalid spec is
422 with the reason); a name already taken is 409.
"""

# No `from __future__ import annotations`: FastAPI must see the Depends(...) objects made by the caller.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from skyline.cluster.api_models import Name, TierName, _no_nul
from skyline.cluster.service_plane import ServicePlane
from skyline.cluster.service_spec import ServiceSpec, service_from_mapping
from skyline.cluster.service_store import ServiceRecord
from skyline.cluster.spec import MAX_REPLICAS
from skyline.errors import ConflictError
from skyline.security.rbac import Principal, authorize, owner_scope

Short = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)]
Seconds = Annotated[float, Field(gt=0, le=86_400 * 7, allow_inf_nan=False)]
# Fields of the replica template: changing one rolls the replicas to a new generation.
ROLLING_FIELDS = (
    "command",
    "cpus",
    "memory_mib",
    "gpus",
    "tiers",
    "priority",
    "env",
    "port_env",
    "model",
    "readiness",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoscaleIn(_Strict):
    mode: Literal["predictive", "reactive", "off"] = "off"
    target_rps_per_replica: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False)
    step_s: Seconds = 15.0
    forecaster: Short = "gbdt"
    target_utilisation: float = Field(0.7, gt=0, le=1)
    window_steps: int = Field(3, ge=1, le=1000)
    cooldown_s: float = Field(60.0, ge=0, le=86_400, allow_inf_nan=False)
    startup_s: float | None = Field(None, ge=0, le=86_400, allow_inf_nan=False)
    refit_every_steps: int = Field(60, ge=1, le=100_000)


class RoutingIn(_Strict):
    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    queue_limit: int = Field(100, ge=0, le=1_000_000)
    hold_s: Seconds = 30.0
    timeout_s: Seconds = 60.0
    affinity_header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = None
    drain_timeout_s: Seconds = 30.0
    auth: bool = False
    rate_limit_per_s: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False)


class ServiceIn(_Strict):
    """A service to deploy (the fields of a service YAML file)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]  # its rules: ServiceSpec's clear message
    command: Annotated[str, Field(min_length=1, max_length=65536), AfterValidator(_no_nul)]
    cpus: float = Field(1.0, ge=0, le=4096, allow_inf_nan=False)
    memory_mib: int = Field(256, ge=0, le=2**31 - 1)
    gpus: float = Field(0.0, ge=0, le=64, allow_inf_nan=False)
    tiers: list[TierName] = Field(default_factory=list, max_length=3)
    priority: int = Field(0, ge=-1000, le=1000)
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")], Name] = Field(
        default_factory=dict, max_length=256
    )
    port_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] = "PORT"
    replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    min_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    max_replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    model: Short | None = None  # NAME:VERSION, checked by ServiceSpec
    readiness: Annotated[str, Field(pattern=r"^/\S{0,1023}$")] | None = None
    slo_p99_ms: float | None = Field(None, gt=0, le=3_600_000, allow_inf_nan=False)
    startup_timeout_s: Seconds = 300.0
    autoscale: AutoscaleIn = Field(default_factory=lambda: AutoscaleIn.model_validate({}))
    routing: RoutingIn = Field(default_factory=lambda: RoutingIn.model_validate({}))

    def to_spec(self) -> ServiceSpec:
        return service_from_mapping(self.model_dump(exclude_none=True))


class ScaleIn(_Strict):
    """A new replica count (autoscaling off only) and/or new bounds."""

    replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    min_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    max_replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS)


class UpdateIn(_Strict):
    """Fields to change; any field of the replica template (command, env, model, ...) rolls the replicas."""

    command: Annotated[str, Field(min_length=1, max_length=65536), AfterValidator(_no_nul)] | None = None
    cpus: float | None = Field(None, ge=0, le=4096, allow_inf_nan=False)
    memory_mib: int | None = Field(None, ge=0, le=2**31 - 1)
    gpus: float | None = Field(None, ge=0, le=64, allow_inf_nan=False)
    tiers: list[TierName] | None = Field(None, max_length=3)
    priority: int | None = Field(None, ge=-1000, le=1000)
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")], Name] | None = Field(
        None, max_length=256
    )
    port_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] | None = None
    model: Short | None = None
    readiness: Annotated[str, Field(pattern=r"^/\S{0,1023}$")] | None = None
    slo_p99_ms: float | None = Field(None, gt=0, le=3_600_000, allow_inf_nan=False)
    startup_timeout_s: Seconds | None = None
    autoscale: AutoscaleIn | None = None
    routing: RoutingIn | None = None


def _changed(record: ServiceRecord, changes: dict[str, Any]) -> tuple[ServiceSpec, bool]:
    """The spec with ``changes`` (the autoscale and routing sections merge field by field), and
    whether the replica template changed (then the replicas roll to a new generation)."""
    before = record.spec.to_json()
    merged = before | changes
    for section in ("autoscale", "routing"):
        if section in changes:
            merged[section] = before[section] | changes[section]
    spec = service_from_mapping(merged)
    return spec, any(spec.to_json()[f] != before[f] for f in ROLLING_FIELDS)


def service_router(plane: ServicePlane, who: Any) -> APIRouter:
    """The routes over ``plane``; ``who(action, kind)`` is the app's authorization dependency."""
    router = APIRouter(prefix="/v1/services", tags=["services"])
    _deploy_routes(router, plane, who)
    _change_routes(router, plane, who)
    _history_routes(router, plane, who)
    return router


def _owned(plane: ServicePlane, name: str, principal: Principal, action: str) -> ServiceRecord:
    record = plane.store.services.get(name)
    authorize(principal, action, "jobs", owner=record.owner)
    return record


def _deploy_routes(router: APIRouter, plane: ServicePlane, who: Any) -> None:
    store = plane.store.services

    @router.post("", status_code=201)
    def deploy(body: ServiceIn, principal: Annotated[Principal, who("create", "jobs")]) -> dict[str, Any]:
        """Deploy a service: its replicas are created, probed, then given traffic at the gateway."""
        record = store.create(body.to_spec(), owner=principal.subject)
        plane.controller.wake()
        return plane.status(record)

    @router.get("")
    def list_services(principal: Annotated[Principal, who("read", "jobs")]) -> list[dict[str, Any]]:
        """Services (an operator sees its own), each with its ready and desired replica counts."""
        owner = owner_scope(principal, "jobs")  # services ride on the jobs grants
        return [plane.summary(r) for r in store.find(owner=owner)]

    @router.get("/{name}")
    def status(name: str, principal: Annotated[Principal, who("read", "jobs")]) -> dict[str, Any]:
        """A service: spec, replicas (state, node, port), latest telemetry, forecast and last decisions."""
        return plane.status(_owned(plane, name, principal, "read"))

    @router.delete("/{name}", status_code=202)
    def delete(name: str, principal: Annotated[Principal, who("delete", "jobs")]) -> dict[str, Any]:
        """Delete: replicas drain (they finish their requests) and stop; then the service is gone."""
        _owned(plane, name, principal, "delete")
        record = store.mark_deleting(name)
        plane.controller.wake()
        return plane.summary(record)


def _change_routes(router: APIRouter, plane: ServicePlane, who: Any) -> None:
    store = plane.store.services

    @router.post("/{name}/scale")
    def scale(
        name: str, body: ScaleIn, principal: Annotated[Principal, who("update", "jobs")]
    ) -> dict[str, Any]:
        """Set the replica count (when autoscaling is off) and/or the bounds autoscaling stays within."""
        record = _owned(plane, name, principal, "update")
        if body.replicas is not None and record.spec.autoscale.mode != "off":
            raise ConflictError(
                f"service {name} is autoscaled ({record.spec.autoscale.mode}); change --min/--max, "
                "or turn autoscaling off ('skyline service update --autoscale off') to set the count"
            )
        changes = body.model_dump(exclude_none=True)
        low = changes.get("min_replicas", record.spec.min_replicas)
        high = changes.get("max_replicas", record.spec.max_replicas)
        changes.setdefault("replicas", min(max(record.desired, low), high))  # the spec's count follows
        spec, _ = _changed(record, changes)
        updated = store.update(name, spec, roll=False)
        if body.replicas is not None:
            store.set_desired(updated.id, body.replicas)
        plane.controller.wake()
        return plane.status(store.get(name))

    @router.post("/{name}/update")
    def update(
        name: str, body: UpdateIn, principal: Annotated[Principal, who("update", "jobs")]
    ) -> dict[str, Any]:
        """Change the spec; a new replica template (command, model, env, ...) rolls the replicas over."""
        record = _owned(plane, name, principal, "update")
        spec, roll = _changed(record, body.model_dump(exclude_unset=True))
        store.update(name, spec, roll=roll)
        plane.controller.wake()
        return plane.status(store.get(name))


def _history_routes(router: APIRouter, plane: ServicePlane, who: Any) -> None:
    store = plane.store.services

    @router.get("/{name}/decisions")
    def decisions(
        name: str,
        principal: Annotated[Principal, who("read", "jobs")],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """The autoscaler's decisions, oldest first: observed demand, forecast, each rule, target, why."""
        return store.decisions(_owned(plane, name, principal, "read").id, limit=limit)

    @router.get("/{name}/metrics")
    def metrics(
        name: str,
        principal: Annotated[Principal, who("read", "metrics")],
        since: Annotated[float, Query(ge=0, le=1e12, allow_inf_nan=False)] = 0.0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> list[dict[str, Any]]:
        """Telemetry windows (rate, errors, latency percentiles, concurrency, per-replica queues)."""
        return store.metrics(store.get(name).id, since_s=since, limit=limit)
