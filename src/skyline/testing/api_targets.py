"""Every HTTP API of skyline, started for real on 127.0.0.1 with tokens for every role, for the security
matrix and the fuzzers (tests/integration/test_security_matrix.py, bench/bench_security.py).

A target says, for each operation of its OpenAPI document, which (action, resource kind) of the ONE
permission table guards it (`Rule`), or that it is public (``None``), or that it accepts one shared edge
token (`STATIC`). An API that does not exist in this tree yet is reported as `TargetUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["STATIC", "TARGETS", "ApiTarget", "Rule", "TargetUnavailableError", "TlsPair", "serve_app"]


@dataclass(frozen=True, slots=True)
class Rule:
    """The permission an operation needs: ``authorize(principal, action, kind)``."""

    action: str
    kind: str


STATIC = Rule("static", "token")  # a shared bearer secret (no roles): valid token → allowed


class TargetUnavailableError(Exception):
    """The API's package is not in this tree (yet); the caller skips it and says so."""


@dataclass(slots=True, kw_only=True)
class ApiTarget:
    name: str
    url: str
    tokens: Mapping[str, str]  # role name (or "edge") → a valid token of that role
    rules: Mapping[str, Rule | None]  # "GET /v1/jobs/{job_id}" → Rule, None = public
    path_values: Mapping[str, str] = field(default_factory=dict)  # sample values for the matrix
    body_limit_bytes: int | None = None  # the server's documented request body cap, if any
    fuzz_token: str = "admin"  # the most privileged token: lets fuzz cases reach the handlers


TlsPair = tuple[Path, Path]  # (certificate, private key)


@contextmanager
def serve_app(app: Any, *, tls: TlsPair | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Run an ASGI app on a free 127.0.0.1 port in a thread (HTTPS with ``tls``); the context yields its URL."""
    from skyline.serving.server import BackgroundServer

    with BackgroundServer(app, tls=tls, start_timeout_s=timeout_s) as server:
        yield server.url


def _role_tokens(authority: Any) -> dict[str, str]:
    from skyline.security.rbac import Role

    tokens = {"admin": authority.bootstrap_admin() or authority.issue("root", Role.ADMIN)}
    for role in Role:
        if role is not Role.ADMIN:
            tokens[role.value] = authority.issue(f"{role.value}-1", role)
    return tokens


CLUSTER_RULES: dict[str, Rule | None] = {
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
}


@contextmanager
def cluster_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The control plane (skyline.cluster), its loop stopped: the API and store are what is tested."""
    try:
        from skyline.cluster.server import ServerConfig, build
    except ImportError as exc:
        raise TargetUnavailableError(f"skyline.cluster has no server yet ({exc})") from exc
    built = build(ServerConfig(state_dir=folder / "cluster", port=0))
    try:
        with serve_app(built.app, tls=tls) as url:
            yield ApiTarget(
                name="cluster",
                url=url,
                tokens=_role_tokens(built.authority),
                rules=CLUSTER_RULES,
                path_values={"job_id": "job-missing", "node_id": "node-missing"},
            )
    finally:
        built.store.close()


SERVING_RULES: dict[str, Rule | None] = {
    "GET /v2/health/live": None,
    "GET /v2/health/ready": None,
    "GET /v2": None,
    "GET /v2/models/{name}": Rule("read", "models"),
    "GET /v2/models/{name}/versions/{version}": Rule("read", "models"),
    "GET /v2/models/{name}/ready": Rule("read", "models"),
    "GET /v2/models/{name}/versions/{version}/ready": Rule("read", "models"),
    "POST /v2/models/{name}/infer": Rule("invoke", "models"),
    "POST /v2/models/{name}/versions/{version}/infer": Rule("invoke", "models"),
    "POST /v2/repository/index": Rule("read", "repository"),
    "POST /v2/repository/models/{name}/load": Rule("update", "repository"),
    "POST /v2/repository/models/{name}/unload": Rule("update", "repository"),
    "GET /metrics": Rule("read", "metrics"),
}


@contextmanager
def serving_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The inference server (skyline.serving) over a one-model repository (a small ONNX MLP)."""
    try:
        from skyline.security.tokens import TokenAuthority
        from skyline.serving.app import MAX_BODY_BYTES, create_app
        from skyline.serving.repository import ModelRepository
        from skyline.serving.samples import write_mlp_onnx
    except ImportError as exc:
        raise TargetUnavailableError(f"skyline.serving has no app yet ({exc})") from exc
    root = folder / "serving" / "repo"
    root.mkdir(parents=True, exist_ok=True)
    repo = ModelRepository(root)
    repo.add(write_mlp_onnx(folder / "serving" / "mlp.onnx"), name="mlp", version=1)
    authority = TokenAuthority(folder / "serving" / "tokens.json")
    with serve_app(create_app(repo, authority=authority, cores=1), tls=tls) as url:
        yield ApiTarget(
            name="serving",
            url=url,
            tokens=_role_tokens(authority),
            rules=SERVING_RULES,
            path_values={"name": "mlp", "version": "1"},
            body_limit_bytes=MAX_BODY_BYTES,
        )


EDGE_RULES: dict[str, Rule | None] = {
    **SERVING_RULES,  # the edge cloud IS the inference server, plus the edge's routers
    "GET /health": None,
    "POST /v1/uplink": Rule("create", "uplink"),
    "POST /v1/echo": Rule("read", "uplink"),
    "POST /v1/telemetry": Rule("create", "metrics"),
    "GET /v1/telemetry": Rule("read", "metrics"),
    "GET /v1/repository/{model}": Rule("read", "repository"),
    "GET /v1/repository/{model}/{version}": Rule("read", "repository"),
    "GET /v1/repository/{model}/{version}/{filename}": Rule("read", "repository"),
    "GET /v1/split/{name}/{version}/profile": Rule("invoke", "models"),
    "POST /v1/split/{name}/{version}/{partition}": Rule("invoke", "models"),
    "GET /v1/fleet/agents/{agent}/models/{model}": Rule("read", "repository"),
    "GET /v1/fleet": Rule("read", "metrics"),
    "POST /v1/rollouts": Rule("update", "repository"),
    "GET /v1/rollouts": Rule("read", "metrics"),
    "GET /v1/rollouts/{rollout_id}": Rule("read", "metrics"),
}


@contextmanager
def edge_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The edge cloud (skyline.edge.cloud: the inference server + uplink, repository, split, fleet routes)
    over a repository with one signed, splittable model."""
    try:
        from skyline.edge.cloud import CloudConfig, EdgeCloud
        from skyline.edge.publish import publish_model
        from skyline.security.signing import generate_signing_keys
        from skyline.security.tokens import TokenAuthority
        from skyline.serving.app import MAX_BODY_BYTES
        from skyline.testing.edge import constant_classifier
    except ImportError as exc:
        raise TargetUnavailableError(f"skyline.edge has no cloud yet ({exc})") from exc
    private, public = generate_signing_keys(folder / "edge" / "k.key", folder / "edge" / "k.pub")
    publish_model(
        constant_classifier((8,), label=1), (8,), root=folder / "edge" / "repo", name="digits", version=1,
        private_key=private, split=True,
    )  # fmt: skip
    authority = TokenAuthority(folder / "edge" / "tokens.json")
    config = CloudConfig(
        repository=folder / "edge" / "repo", tokens=folder / "edge" / "tokens.json",
        ingest=folder / "edge" / "ingest.db", public_key=public, port=0, tls=tls,
    )  # fmt: skip
    with EdgeCloud(config, authority=authority) as cloud:
        yield ApiTarget(
            name="edge",
            url=cloud.url,
            tokens=_role_tokens(authority),
            rules=EDGE_RULES,
            path_values={
                "name": "digits",
                "model": "digits",
                "version": "1",
                "filename": "model.onnx",
                "partition": "1",
                "agent": "edge-1",
                "rollout_id": "1",
            },
            body_limit_bytes=MAX_BODY_BYTES,
        )


class TargetFactory(Protocol):
    def __call__(self, folder: Path, tls: TlsPair | None = None) -> AbstractContextManager[ApiTarget]: ...


EDGE_AGENT_RULES: dict[str, Rule | None] = {
    "GET /health": None,
    "GET /v1/status": Rule("read", "metrics"),
    "POST /v2/models/{name}/infer": Rule("invoke", "models"),
    "POST /v1/labels": Rule("invoke", "models"),
}


@contextmanager
def edge_agent_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The edge agent's local API (skyline.edge.agent_app), its model synced (signed) from an edge cloud."""
    try:
        from skyline.edge.agent import AgentConfig, EdgeAgent
        from skyline.edge.agent_app import create_agent_app
        from skyline.security.http import DEFAULT_MAX_BODY_BYTES
        from skyline.security.tokens import TokenAuthority
    except ImportError as exc:
        raise TargetUnavailableError(f"skyline.edge has no agent app yet ({exc})") from exc
    with edge_target(folder / "cloud") as cloud:
        config = AgentConfig(
            cloud_url=cloud.url,
            token=cloud.tokens["edge"],
            model="digits",
            store=folder / "agent",
            public_key=folder / "cloud" / "edge" / "k.pub",
        )
        agent = EdgeAgent(config)  # its loops are not started: stop() only closes its clients and store
        try:
            agent.refresh_model()
            authority = TokenAuthority(folder / "agent-tokens.json")
            with serve_app(create_agent_app(agent, authority=authority), tls=tls) as url:
                yield ApiTarget(
                    name="edge-agent",
                    url=url,
                    tokens=_role_tokens(authority),
                    rules=EDGE_AGENT_RULES,
                    path_values={"name": "digits"},
                    body_limit_bytes=DEFAULT_MAX_BODY_BYTES,
                )
        finally:
            agent.stop()


TARGETS: dict[str, TargetFactory] = {
    "cluster": cluster_target,
    "serving": serving_target,
    "edge": edge_target,
    "edge-agent": edge_agent_target,
}
