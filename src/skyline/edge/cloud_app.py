"""The cloud side that edge agents talk to: THE inference server (`skyline.serving.app`, Open Inference
Protocol v2 with dynamic batching over the signed model repository) plus the edge's routers:

- ``/v1/uplink`` — idempotent ingestion of the agents' store-and-forward records (`skyline.edge.ingest`);
- ``/v1/telemetry`` — agents report labels, metrics and per-version statistics (`skyline.edge.fleet`);
- ``/v1/repository/...`` — signed model versions for the agents to download (every file of a version);
- ``/v1/split/...`` — the cloud's part of split inference (`skyline.edge.cloud_split`);
- ``/v1/fleet``, ``/v1/rollouts`` — the fleet and staged rollouts (`skyline.edge.fleet_api`);
- ``/v1/echo`` — a network probe (RTT and bandwidth).

Every route but the health checks takes a bearer token of the `TokenAuthority`, authorized by the ONE
permission table (`skyline.security.rbac`, deny by default): an ``edge`` token uplinks, pulls models,
invokes and reports telemetry — each agent has its own, whose subject is the agent's name, and speaks only
for that agent (`skyline.edge.fleet_api.speaks_for`: telemetry, uplinked records naming an agent, the
desired version); reading telemetry and the fleet takes a metrics reader; starting a rollout
takes ``update`` on the repository (admin). With ``audit_log``, every state-changing edge call and every
repository load/unload is appended to the hash-chained audit log (refused attempts too); inference, split
tails and the echo probe change nothing and are not. With ``rate_limit_per_s``, each token gets that many
requests per second on the edge routes and as many on the inference routes (429 + ``Retry-After``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from skyline.edge.fleet import FleetStore
from skyline.edge.fleet_api import fleet_routes, speaks_for
from skyline.edge.ingest import IngestStore
from skyline.edge.rollout import RolloutController
from skyline.errors import NotFoundError
from skyline.security.audit import AuditLog
from skyline.security.http import RateLimiter, require
from skyline.security.http_audit import install_audit
from skyline.security.rbac import Principal, Role, authorize
from skyline.security.tokens import TokenAuthority

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The edge's state-changing routes, and the inference server's (load/unload): what the audit log records.
AUDITED_PATHS = ("/v1/uplink", "/v1/telemetry", "/v1/rollouts", "/v2/repository/models")
Allowed = Callable[[str, str], Any]


class UplinkRecordIn(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    created_at: float


class UplinkBatch(BaseModel):
    records: list[UplinkRecordIn] = Field(max_length=10_000)


class Telemetry(BaseModel):
    agent: str = Field(min_length=1, max_length=128)
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    # model → {"version": int | None, "stats": {version: {answered, errors, latency_ms_p50, labelled, correct}}}
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=32)


def create_cloud_app(
    *,
    repository: Path,
    ingest: IngestStore,
    authority: TokenAuthority,
    fleet: FleetStore,
    controller: RolloutController,
    public_key: Path | None = None,
    audit_log: Path | None = None,
    rate_limit_per_s: float | None = None,
    cores: int | None = None,
) -> FastAPI:
    """The inference server over ``repository`` with the edge's routers (see the module docstring)."""
    from skyline.edge.cloud_split import SplitTails, split_routes
    from skyline.serving.app import create_app

    app = create_app(
        repository, authority=authority, public_key=public_key, cores=cores, rate_limit_per_s=rate_limit_per_s
    )
    app.title = "skyline cloud: inference server + edge fleet"
    if audit_log is not None:
        install_audit(app, AuditLog(audit_log), authority=authority, paths=AUDITED_PATHS)
    limiter = None
    if rate_limit_per_s is not None:
        limiter = RateLimiter.per_token(rate_limit_per_s)

    def allowed(action: str, kind: str) -> Any:
        # Dependencies as defaults, not Annotated: this module uses `from __future__ import annotations`.
        return Depends(require(authority, action, kind, limiter=limiter))

    _ingest_routes(app, ingest, fleet, allowed)
    _repository_routes(app, repository, allowed)
    split_routes(app, SplitTails(repository, public_key=public_key), allowed)
    fleet_routes(app, repository, fleet, controller, allowed)
    return app


def _ingest_routes(app: FastAPI, ingest: IngestStore, fleet: FleetStore, allowed: Allowed) -> None:
    create_uplink, create_metrics = allowed("create", "uplink"), allowed("create", "metrics")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/uplink")
    def uplink(batch: UplinkBatch, who: Principal = create_uplink) -> dict[str, int]:
        for record in batch.records:  # a labelled record names its agent: a rollout counts it for that one
            if "agent" in record.payload:
                speaks_for(who, str(record.payload["agent"]))
        result = ingest.ingest([r.model_dump() for r in batch.records], source=who.subject)
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    @app.post("/v1/echo", dependencies=[allowed("read", "uplink")])
    async def echo(request: Request) -> dict[str, int]:
        """Network probe: the edge times a tiny and a big body to measure RTT and bandwidth."""
        return {"bytes": len(await request.body())}

    @app.post("/v1/telemetry")
    def report(item: Telemetry, who: Principal = create_metrics) -> dict[str, str]:
        speaks_for(who, item.agent)
        fleet.report(item.agent, labels=item.labels, metrics=item.metrics, models=item.models)
        return {"status": "ok"}

    @app.get("/v1/telemetry", dependencies=[allowed("read", "metrics")])
    def telemetry_view() -> dict[str, Any]:
        return {a.name: {"received_at": a.last_seen, **a.metrics} for a in fleet.agents()}


def _repository_routes(app: FastAPI, repository: Path, allowed: Allowed) -> None:
    read_repository = allowed("read", "repository")

    def model_dir(model: str, version: str | None = None) -> Path:
        if not _SAFE_NAME.match(model) or (
            version is not None and not (version.isascii() and version.isdigit())
        ):
            raise NotFoundError(f"no model {model!r} in the repository")
        path = repository / model / version if version is not None else repository / model
        if not path.is_dir():
            raise NotFoundError(f"no model {model!r} version {version} in the repository")
        return path

    @app.get("/v1/repository/{model}")
    def versions(model: str, who: Principal = read_repository) -> dict[str, list[int]]:
        authorize(who, "read", "repository", model=model)
        found = sorted(
            int(p.name) for p in model_dir(model).iterdir() if p.name.isascii() and p.name.isdigit()
        )
        return {"versions": found}

    @app.get("/v1/repository/{model}/{version}")
    def files(model: str, version: str, who: Principal = read_repository) -> dict[str, list[str]]:
        authorize(who, "read", "repository", model=model)
        root = model_dir(model, version)
        return {"files": sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())}

    @app.get("/v1/repository/{model}/{version}/{filename:path}")
    def download(model: str, version: str, filename: str, who: Principal = read_repository) -> Response:
        authorize(who, "read", "repository", model=model)
        root = model_dir(model, version).resolve()
        path = (root / filename).resolve()
        parts = Path(filename).parts
        if not parts or not all(_SAFE_NAME.match(p) for p in parts) or root not in path.parents:
            raise NotFoundError(f"no file {filename!r} in {model}/{version}")
        if not path.is_file():
            raise NotFoundError(f"no file {filename!r} in {model}/{version}")
        return FileResponse(path)


def edge_authority(path: Path, *, subject: str = "edge-device") -> tuple[TokenAuthority, str]:
    """A token file at ``path`` and one fresh ``edge`` token from it, for a cloud run in-process
    (evaluations, the demo, tests)."""
    authority = TokenAuthority(path)
    return authority, authority.issue(subject, Role.EDGE)
