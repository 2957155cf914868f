"""The edge's two APIs as security targets: the edge cloud (the inference server plus the edge's routers:
uplink, telemetry, signed model downloads, split-inference tails, the fleet and staged rollouts) and an
edge agent's local API, its model synced (signed) from that cloud."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skyline.testing.api_target import (
    ApiTarget,
    Rule,
    TlsPair,
    role_tokens,
    serve_app,
)
from skyline.testing.api_targets_llm import OPENAI_BODIES, TINY_NAME, tiny_llm_server, with_openai_bodies
from skyline.testing.api_targets_serving import SERVING_RULES

__all__ = ["EDGE_AGENT_RULES", "EDGE_RULES", "edge_agent_target", "edge_target"]


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
    from skyline.edge.cloud import CloudConfig, EdgeCloud
    from skyline.edge.publish import publish_model
    from skyline.security.signing import generate_signing_keys
    from skyline.security.tokens import TokenAuthority
    from skyline.serving.app import MAX_BODY_BYTES
    from skyline.testing.edge import constant_classifier

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
            tokens=role_tokens(authority),
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


EDGE_AGENT_RULES: dict[str, Rule | None] = {
    "GET /health": None,
    "GET /v1/status": Rule("read", "metrics"),
    "POST /v2/models/{name}/infer": Rule("invoke", "models"),
    "POST /v1/labels": Rule("invoke", "models"),
    "POST /v1/chat/completions": Rule("invoke", "models"),  # its LLM router (``skyline edge run --llm``)
    "POST /v1/completions": Rule("invoke", "models"),
}


@contextmanager
def edge_agent_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The edge agent's local API (skyline.edge.agent_app), its model synced (signed) from an edge cloud,
    with its LLM routes: a router whose edge and cloud ways are one small LLM server."""
    from skyline.edge.agent import AgentConfig, EdgeAgent
    from skyline.edge.agent_app import create_agent_app
    from skyline.edge.llm_router import LLMRouteConfig, LLMRouter
    from skyline.security.http import DEFAULT_MAX_BODY_BYTES
    from skyline.security.tokens import TokenAuthority

    with edge_target(folder / "cloud") as cloud, tiny_llm_server(folder / "llm") as llm:
        config = AgentConfig(
            cloud_url=cloud.url,
            token=cloud.tokens["edge"],
            name="edge-1",  # the edge token's subject: a token speaks only for its own agent
            model="digits",
            store=folder / "agent",
            public_key=folder / "cloud" / "edge" / "k.pub",
        )
        agent = EdgeAgent(config)  # its loops are not started: stop() only closes its clients and store
        try:
            agent.refresh_model()
            authority = TokenAuthority(folder / "agent-tokens.json")
            router = LLMRouter(LLMRouteConfig(local_url=llm.url, cloud_url=llm.url, cloud_model=TINY_NAME))
            app = create_agent_app(agent, authority=authority, llm=router)
            with serve_app(app, tls=tls) as url:
                yield ApiTarget(
                    name="edge-agent",
                    url=url,
                    tokens=role_tokens(authority),
                    rules=EDGE_AGENT_RULES,
                    path_values={"name": "digits"},
                    body_values={"model": TINY_NAME},
                    body_limit_bytes=DEFAULT_MAX_BODY_BYTES,
                    document=with_openai_bodies(copy.deepcopy(app.openapi()), OPENAI_BODIES),
                )
        finally:
            agent.stop()
