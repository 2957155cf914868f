"""The agent's local HTTP API: the same OIP v2 inference protocol as the cloud, plus health and status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from skyline.edge.agent import EdgeAgent
from skyline.edge.cloud_app import InferRequest, decode_tensor
from skyline.errors import NotFoundError, SkylineError


def create_agent_app(agent: EdgeAgent) -> FastAPI:
    """Routes: ``GET /health``, ``GET /v1/status``, ``POST /v2/models/{model}/infer``."""
    app = FastAPI(title=f"skyline edge agent {agent.config.name}")

    @app.exception_handler(SkylineError)
    async def _skyline_error(request: Request, exc: SkylineError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "detail": str(exc.errors())[:2000]}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok" if agent.model_version is not None else "syncing",
            "model_version": agent.model_version,
        }

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return agent.status()

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, request: InferRequest) -> dict[str, Any]:
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
