"""The agent's local HTTP API: the same OIP v2 inference protocol as the cloud, plus health and status.

Deny by default, like every skyline server: ``/health`` is public; ``/v1/status`` needs a role that reads
metrics and inference a role that invokes the model (``invoker``, ``edge``, ``admin``…), with tokens of the
agent's own `TokenAuthority` (a token file next to its store, `skyline token create --tokens ...`). Request
bodies are capped (413 above ``max_body_bytes``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from skyline.edge.agent import EdgeAgent
from skyline.edge.cloud_app import InferRequest, decode_tensor
from skyline.errors import NotFoundError
from skyline.security.http import DEFAULT_MAX_BODY_BYTES, install_error_handlers, require
from skyline.security.rbac import Principal, authorize
from skyline.security.tokens import TokenAuthority


def create_agent_app(
    agent: EdgeAgent, *, authority: TokenAuthority, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """Routes: ``GET /health``, ``GET /v1/status``, ``POST /v2/models/{model}/infer``."""
    app = FastAPI(title=f"skyline edge agent {agent.config.name}")
    install_error_handlers(app, max_body_bytes=max_body_bytes)
    # Dependencies as defaults, not Annotated: this module uses `from __future__ import annotations`.
    invoke = Depends(require(authority, "invoke", "models"))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok" if agent.ready else "syncing",
            "model_version": agent.model_version,
        }

    @app.get("/v1/status", dependencies=[Depends(require(authority, "read", "metrics"))])
    def status() -> dict[str, Any]:
        return agent.status()

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, request: InferRequest, who: Principal = invoke) -> dict[str, Any]:
        authorize(who, "invoke", "models", model=name)  # the token's model scope
        if name != agent.config.model:
            raise NotFoundError(f"this agent serves model {agent.config.model!r}, not {name!r}")
        probs, sources = agent.infer(decode_tensor(request.inputs[0]))
        return {
            "model_name": name,
            "model_version": str(agent.model_version),
            "outputs": [
                {
                    "name": "probs",
                    "shape": list(probs.shape),
                    "datatype": "FP32",
                    "data": probs.ravel().tolist(),
                }
            ],
            "parameters": {"sources": sources},
        }

    return app
