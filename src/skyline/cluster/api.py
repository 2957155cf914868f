"""The control plane's REST API (FastAPI): jobs, nodes, agent reports, metrics, tokens.

Every route needs a bearer token and a role that `skyline.security.rbac.authorize` allows (deny by
default); operators act only on their own jobs. Errors are JSON ``{"error": ...}`` with the status of
their `skyline.errors` class; malformed bodies are 422.
"""

# No `from __future__ import annotations`: FastAPI must see the Depends(...) objects made in create_app.
# The hot routes (submit, heartbeat) are ``async def``: each does a few short database
# statements (well under a millisecond on SQLite), cheaper on the event loop than a thread-pool hop.

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Response
from fastapi.responses import PlainTextResponse
from prometheus_client.registry import Collector

from skyline.cluster.api_models import HeartbeatIn, JobIn, LogsIn, NodeIn, TokenIn
from skyline.cluster.control import ControlPlane
from skyline.cluster.node_store import UsageSample
from skyline.cluster.prometheus import render_metrics
from skyline.cluster.service_api import service_router
from skyline.cluster.service_plane import ServicePlane
from skyline.cluster.submit_batch import SubmitBatcher
from skyline.core import JobEvent, Resources, Tier
from skyline.errors import NotFoundError, SkylineError
from skyline.security.audit import AuditLog
from skyline.security.http import RateLimiter, install_error_handlers, require
from skyline.security.http_audit import install_audit
from skyline.security.rbac import Principal, authorize, owner_scope
from skyline.security.tokens import TokenAuthority

JOB_STATUSES = ("pending", "placed", "running", "succeeded", "failed", "cancelled")


def create_app(
    control: ControlPlane,
    authority: TokenAuthority,
    *,
    audit_log: Path | None = None,
    rate_limit_per_s: float | None = None,
    services: ServicePlane | None = None,
) -> FastAPI:
    """The API over ``control`` (its store, executor and loop), authenticating with ``authority``.

    With ``services``, the services' routes (``/v1/services``) and metrics are part of it.

    With ``audit_log``, every state-changing call (POST: submits, cancels, tokens, agents' registrations,
    heartbeats and reports), refused ones included, is appended to that hash-chained log. With
    ``rate_limit_per_s``, each token gets that many requests per second (a burst of two seconds' worth),
    then 429 with ``Retry-After``.
    """
    app = FastAPI(title="skyline control plane", version="1", description=__doc__)
    install_error_handlers(app)
    if audit_log is not None:
        install_audit(app, AuditLog(audit_log), authority=authority)

    limiter = None
    if rate_limit_per_s is not None:
        limiter = RateLimiter.per_token(rate_limit_per_s)

    def who(action: str, kind: str) -> Any:
        return Depends(require(authority, action, kind, limiter=limiter))

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness (no token needed): the server answers."""
        return {"status": "ok"}

    _job_routes(app, control, who)
    _node_routes(app, control, who, [services.collector()] if services is not None else [])
    _token_routes(app, authority, who)
    if services is not None:
        app.include_router(service_router(services, who))
    return app


def _job_routes(app: FastAPI, control: ControlPlane, who: Any) -> None:
    store = control.store
    batcher = SubmitBatcher(control)  # submits that arrive together share one transaction

    @app.post("/v1/jobs", status_code=201, tags=["jobs"])
    async def submit_job(
        body: JobIn,
        response: Response,
        principal: Annotated[Principal, who("create", "jobs")],
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> dict[str, Any]:
        """Queue a job. A repeated ``Idempotency-Key`` returns the first job (200) instead of a new one."""
        record, created = await batcher.submit(body.to_request(idempotency_key), owner=principal.subject)
        if not created:
            authorize(principal, "read", "jobs", owner=record.owner)
            response.status_code = 200
        return record.to_json()

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(
        principal: Annotated[Principal, who("read", "jobs")],
        status: Annotated[list[str] | None, Query(max_length=6)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """Jobs in submit order (an operator sees its own)."""
        wanted = [s for s in (status or []) if s in JOB_STATUSES]
        if status and len(wanted) != len(status):
            raise NotFoundError(f"unknown job status in {status}; statuses are {', '.join(JOB_STATUSES)}")
        owner = owner_scope(principal, "jobs")
        return [j.to_json() for j in store.jobs.find(statuses=wanted, owner=owner, limit=limit)]

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str, principal: Annotated[Principal, who("read", "jobs")]) -> dict[str, Any]:
        """One job with its current placement (one entry per replica) and the service it received."""
        record = store.jobs.get(job_id)
        authorize(principal, "read", "jobs", owner=record.owner)
        return record.to_json(store.jobs.replicas(job_id, record.attempt), now_s=store.now())

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: str, principal: Annotated[Principal, who("delete", "jobs")]) -> dict[str, Any]:
        """Cancel an unfinished job; its replicas are stopped (409 when it already finished)."""
        record = store.jobs.get(job_id)
        authorize(principal, "delete", "jobs", owner=record.owner)
        control.cancel(job_id)
        return store.jobs.get(job_id).to_json()

    @app.get("/v1/jobs/{job_id}/logs", tags=["jobs"])
    def job_logs(
        job_id: str,
        principal: Annotated[Principal, who("read", "jobs")],
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        """Log lines after line id ``after`` (pass the last ``next`` to follow), with the job's status."""
        record = store.jobs.get(job_id)
        authorize(principal, "read", "jobs", owner=record.owner)
        lines = store.logs.lines(job_id, after_id=after, limit=limit)
        return {
            "job_id": job_id,
            "status": str(record.status),
            "next": lines[-1]["id"] if lines else after,
            "lines": [{k: ln[k] for k in ("attempt", "rank", "at_s", "line")} for ln in lines],
        }


def _node_routes(app: FastAPI, control: ControlPlane, who: Any, collectors: list[Collector]) -> None:
    store = control.store

    @app.post("/v1/nodes", status_code=201, tags=["nodes"])
    def register_node(
        body: NodeIn, principal: Annotated[Principal, who("create", "nodes")]
    ) -> dict[str, Any]:
        """An agent registers its node (again after a restart or after being declared lost)."""
        capacity = Resources.of(
            cpus=body.cpus, memory_mib=body.memory_mib, gpus=body.gpus, gpu_type=body.gpu_type
        )
        record = store.nodes.register(
            body.id, tier=Tier(body.tier), address=body.address, capacity=capacity, labels=dict(body.labels)
        )
        control.wake()
        return record.to_json()

    @app.get("/v1/nodes", tags=["nodes"])
    def list_nodes(principal: Annotated[Principal, who("read", "nodes")]) -> list[dict[str, Any]]:
        """Every node ever registered, alive or lost."""
        return [n.to_json() for n in store.nodes.find()]

    @app.get("/v1/nodes/{node_id}", tags=["nodes"])
    def get_node(node_id: str, principal: Annotated[Principal, who("read", "nodes")]) -> dict[str, Any]:
        return store.nodes.get(node_id).to_json()

    @app.post("/v1/nodes/{node_id}/heartbeat", tags=["agents"])
    async def heartbeat(
        node_id: str, body: HeartbeatIn, principal: Annotated[Principal, who("update", "nodes")]
    ) -> dict[str, Any]:
        """Record utilization and the replica reports the beat carries (``replicas``: running, or ended
        with an exit code); answer with the replicas this node must run (it stops any others) and, per
        report in order, whether it was accepted (a report about a replica not on this node is not)."""
        sample = UsageSample(
            cpu_percent=body.cpu_percent,
            memory_percent=body.memory_percent,
            gpu_percent=body.gpu_percent,
            running_replicas=body.running_replicas,
        )
        assignments, outcomes = control.heartbeat(node_id, sample, [r.to_report() for r in body.replicas])
        return {"assignments": [a.to_json() for a in assignments], "reports": [_outcome(o) for o in outcomes]}

    @app.post("/v1/nodes/{node_id}/logs", tags=["agents"])
    def append_logs(
        node_id: str, body: LogsIn, principal: Annotated[Principal, who("update", "nodes")]
    ) -> dict[str, int]:
        """An agent streams a replica's output lines."""
        store.jobs.get(body.job_id)
        store.logs.append(body.job_id, body.attempt, body.rank, body.lines)
        return {"accepted": len(body.lines)}

    @app.get("/v1/nodes/{node_id}/metrics", tags=["metrics"])
    def node_metrics(
        node_id: str,
        principal: Annotated[Principal, who("read", "metrics")],
        since: Annotated[float, Query(ge=0, le=1e12, allow_inf_nan=False)] = 0.0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> list[dict[str, Any]]:
        """The node's utilization history (one sample per heartbeat), oldest first."""
        return store.nodes.metrics(node_id, since_s=since, limit=limit)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["metrics"])
    def prometheus(principal: Annotated[Principal, who("read", "metrics")]) -> str:
        """Prometheus exposition: node utilization and job counts by status."""
        return render_metrics(store, collectors)


def _outcome(outcome: JobEvent | SkylineError | None) -> dict[str, Any]:
    """One report's answer: refused with the reason, or accepted with the job event it implied."""
    if isinstance(outcome, SkylineError):
        return {"accepted": False, "error": str(outcome)}
    return {"accepted": True, "job_event": str(outcome.status) if outcome else None}


def _token_routes(app: FastAPI, authority: TokenAuthority, who: Any) -> None:
    @app.post("/v1/tokens", status_code=201, tags=["tokens"])
    def create_token(
        body: TokenIn, principal: Annotated[Principal, who("create", "tokens")]
    ) -> dict[str, str]:
        """Issue a token (admins): e.g. an ``agent`` token for 'skyline agent join'."""
        token = authority.issue(body.subject, body.role, ttl_s=body.ttl_s)
        return {"token": token, "subject": body.subject, "role": body.role}

    @app.get("/v1/whoami", tags=["tokens"])
    def whoami(principal: Annotated[Principal, who("read", "jobs")]) -> dict[str, str]:
        return {"subject": principal.subject, "role": str(principal.role)}
