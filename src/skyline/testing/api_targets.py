"""Every HTTP API of skyline, started for real on 127.0.0.1 with tokens for every role, for the security
matrix and the fuzzers (tests/integration/test_security_matrix.py, bench/bench_security.py).

`TARGETS` names them: the control plane (jobs, nodes, tokens and the services' routes), its web console
(``/ui``: cookie sign-in, CSRF), the services' gateway (a service with ``routing.auth``), the inference
server, the OpenAI-compatible LLM server, the edge cloud and an edge agent. What a target is:
`skyline.testing.api_target`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.testing.api_target import (
    SIGN_IN,
    STATIC,
    ApiTarget,
    Guard,
    RateLimit,
    Rule,
    TargetFactory,
    TlsPair,
    role_tokens,
    serve_app,
)
from skyline.testing.api_targets_edge import edge_agent_target, edge_target
from skyline.testing.api_targets_llm import llm_target
from skyline.testing.api_targets_serving import mlp_repository, serving_target

__all__ = [
    "SIGN_IN",
    "STATIC",
    "TARGETS",
    "ApiTarget",
    "RateLimit",
    "Rule",
    "TlsPair",
    "serve_app",
]

_SERVICES: dict[str, Guard] = {  # a service is a job kind: its replicas are jobs (docs/services.md)
    "POST /v1/services": Rule("create", "jobs"),
    "GET /v1/services": Rule("read", "jobs"),
    "GET /v1/services/{name}": Rule("read", "jobs"),
    "DELETE /v1/services/{name}": Rule("delete", "jobs"),
    "POST /v1/services/{name}/scale": Rule("update", "jobs"),
    "POST /v1/services/{name}/update": Rule("update", "jobs"),
    "GET /v1/services/{name}/decisions": Rule("read", "jobs"),
    "GET /v1/services/{name}/metrics": Rule("read", "metrics"),
}
CLUSTER_RULES: dict[str, Guard] = {
    "GET /healthz": None,
    "POST /v1/jobs": Rule("create", "jobs"),
    "GET /v1/jobs": Rule("read", "jobs"),
    "GET /v1/jobs/{job_id}": Rule("read", "jobs"),
    "POST /v1/jobs/{job_id}/cancel": Rule("delete", "jobs"),
    "GET /v1/jobs/{job_id}/logs": Rule("read", "jobs"),
    "POST /v1/nodes": Rule("create", "nodes"),
    "GET /v1/nodes": Rule("read", "nodes"),
    "GET /v1/nodes/{node_id}": Rule("read", "nodes"),
    "POST /v1/nodes/{node_id}/heartbeat": Rule("update", "nodes"),
    "POST /v1/nodes/{node_id}/logs": Rule("update", "nodes"),
    "GET /v1/nodes/{node_id}/metrics": Rule("read", "metrics"),
    "GET /metrics": Rule("read", "metrics"),
    "POST /v1/tokens": Rule("create", "tokens"),
    "GET /v1/whoami": Rule("read", "jobs"),
    **_SERVICES,
}


@dataclass(slots=True)
class _ControlPlane:
    built: Any  # skyline.cluster.server.Built
    url: str
    tokens: dict[str, str]


@contextmanager
def _control_plane(folder: Path, tls: TlsPair | None) -> Iterator[_ControlPlane]:
    """A control plane as `build` wires it, its services (gateway, controller, autoscaler) running and
    its scheduling loop stopped: what is tested is the API and the store. One service, ``svc``, exists,
    owned by the operator token's subject (no replicas)."""
    from skyline.cluster.server import ServerConfig, build
    from skyline.cluster.service_spec import service_from_mapping

    built = build(ServerConfig(state_dir=folder / "cluster", port=0))
    try:
        tokens = role_tokens(built.authority)
        spec = service_from_mapping({"name": "svc", "command": "sleep 600", "replicas": 0, "max_replicas": 1})
        built.store.services.create(spec, owner="operator-1")
        built.services.start()
        with serve_app(built.app, tls=tls) as url:
            yield _ControlPlane(built, url, tokens)
    finally:
        built.console.close()  # ends open live streams
        built.services.stop()  # its gateway's socket included
        built.control.executor.close()
        built.store.close()


@contextmanager
def cluster_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The control plane's API (skyline.cluster): jobs, nodes, tokens, metrics and services."""
    with _control_plane(folder, tls) as plane:
        yield ApiTarget(
            name="cluster",
            url=plane.url,
            tokens=plane.tokens,
            rules=CLUSTER_RULES,
            path_values={"job_id": "job-missing", "node_id": "node-missing", "name": "svc"},
        )


CONSOLE_RULES: dict[str, Guard] = {
    "GET /ui/login": None,
    "POST /ui/login": SIGN_IN,
    "POST /ui/logout": None,  # signing out needs nothing (with a session, its CSRF token)
    "GET /ui/static/{name}": None,
    "GET /ui/vendor/{name}": None,
    "GET /ui/events": (Rule("read", "jobs"), Rule("read", "nodes"), Rule("read", "metrics")),
    "GET /ui/": Rule("read", "nodes"),
    "GET /ui/jobs": Rule("read", "jobs"),
    "POST /ui/jobs": Rule("create", "jobs"),
    "GET /ui/jobs/{job_id}": Rule("read", "jobs"),
    "GET /ui/jobs/{job_id}/logs/stream": Rule("read", "jobs"),
    "POST /ui/jobs/{job_id}/cancel": Rule("delete", "jobs"),
    "GET /ui/nodes": Rule("read", "nodes"),
    "GET /ui/nodes/{node_id}": (Rule("read", "nodes"), Rule("read", "metrics")),
    "GET /ui/scheduling": Rule("read", "jobs"),
    "GET /ui/models": Rule("read", "repository"),
    "GET /ui/audit": Rule("read", "audit"),
}
# What the console's routes read beyond their path (query strings, form fields, headers): they parse
# them themselves, so its generated document lacks them; they are added for the fuzzer.
CONSOLE_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "GET /ui/jobs": ("query", ("status", "tier", "user", "before", "after")),
    "POST /ui/jobs": (
        "form",
        ("command", "name", "kind", "cpus", "gpus", "memory_mib", "replicas", "priority", "tier"),
    ),
    "POST /ui/login": ("form", ("token", "next")),
    "GET /ui/events": ("header", ("last-event-id",)),
    "GET /ui/jobs/{job_id}/logs/stream": ("header", ("last-event-id",)),
}


_ID_INPUTS = frozenset({"before", "after", "last-event-id"})  # row ids: any integer, huge ones included


def console_document(app: Any) -> dict[str, Any]:
    """An OpenAPI document of the console mounted at ``/ui`` of ``app`` (it serves none), with
    `CONSOLE_INPUTS`: its routes come from the app itself, so a new page cannot go unclassified."""
    from fastapi.openapi.utils import get_openapi
    from starlette.routing import Mount

    ui: Any = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/ui")  # a FastAPI app
    document = get_openapi(title="skyline console", version="1", routes=ui.routes)
    document["paths"] = {"/ui" + path: ops for path, ops in document["paths"].items()}
    for key, (where, names) in CONSOLE_INPUTS.items():
        method, path = key.split(" ", 1)
        op = document["paths"][path][method.lower()]
        types = {n: {"type": "integer" if n in _ID_INPUTS else "string"} for n in names}
        if where == "form":
            fields = {"type": "object", "properties": types}
            op["requestBody"] = {"content": {"application/x-www-form-urlencoded": {"schema": fields}}}
        else:
            params = [{"name": n, "in": where, "required": False, "schema": types[n]} for n in names]
            op["parameters"] = [*op.get("parameters", []), *params]
    return document


def console_credentials(token: str | None) -> dict[str, str]:
    """A signed-in browser's headers: the session cookie and the page's CSRF token."""
    from skyline.cluster.console.session import COOKIE, CSRF_HEADER, csrf_for

    return {} if token is None else {"Cookie": f"{COOKIE}={token}", CSRF_HEADER: csrf_for(token)}


@contextmanager
def console_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The web console (skyline.cluster.console) at ``/ui`` of a control plane."""
    with _control_plane(folder, tls) as plane:
        # A live stream then ends within a second, so that a fuzzed one is answered whole.
        plane.built.console.feed.lifetime_s = 1.0
        yield ApiTarget(
            name="console",
            url=plane.url,
            tokens=plane.tokens,
            rules=CONSOLE_RULES,
            path_values={"job_id": "job-missing", "node_id": "node-missing", "name": "console.css"},
            document=console_document(plane.built.app),
            credentials=console_credentials,
            sign_in="/ui/login",
        )


@contextmanager
def gateway_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The services' gateway (skyline.cluster.gateway) in front of an inference server, for a service with
    ``routing.auth``: every path of the service needs ``invoke`` on its model. A second service,
    ``mlp-limited``, also has a per-token rate limit of 5 requests/s."""
    import httpx

    from skyline.cluster.gateway import Gateway
    from skyline.cluster.gateway_http import MAX_BODY_BYTES
    from skyline.cluster.gateway_routing import EndpointInfo
    from skyline.cluster.service_spec import RoutingSpec
    from skyline.security.tokens import TokenAuthority
    from skyline.serving.app import create_app

    repo = mlp_repository(folder / "gateway")
    authority = TokenAuthority(folder / "gateway" / "tokens.json")
    # The replica as a service runs it: `skyline serve --insecure-no-auth-local-only` on loopback.
    with serve_app(create_app(repo, cores=1)) as replica, Gateway(authority=authority, tls=tls) as gateway:
        ready = [EndpointInfo(id="replica-1", host="127.0.0.1", port=int(replica.rsplit(":", 1)[1]))]
        gateway.publish("mlp", RoutingSpec(auth=True), ready, model="mlp")
        gateway.publish("mlp-limited", RoutingSpec(auth=True, rate_limit_per_s=5.0), ready, model="mlp")
        paths = httpx.get(f"{replica}/openapi.json", timeout=30).json()["paths"]
        yield ApiTarget(
            name="gateway",
            url=f"{gateway.url}/services/mlp",
            tokens=role_tokens(authority),
            rules={f"{m.upper()} {p}": Rule("invoke", "models") for p, ops in paths.items() for m in ops},
            path_values={"name": "mlp", "version": "1"},
            body_limit_bytes=MAX_BODY_BYTES,
            rate_limit=RateLimit("GET /v2/health/live", 5.0, 10, url=f"{gateway.url}/services/mlp-limited"),
        )


TARGETS: dict[str, TargetFactory] = {
    "cluster": cluster_target,
    "console": console_target,
    "gateway": gateway_target,
    "serving": serving_target,
    "llm": llm_target,
    "edge": edge_target,
    "edge-agent": edge_agent_target,
}
