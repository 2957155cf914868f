"""The inference server's HTTP face: Open Inference Protocol v2 (REST), the repository extension, /metrics.

``create_app(repository)`` returns a FastAPI app that loads every model of the repository at start-up
(ready only once each has answered a warm-up inference). With a `TokenAuthority`, every model and
repository endpoint needs a bearer token: ``invoke`` on ``models`` (scoped per model) to infer, ``read``
to see metadata, ``update`` on ``repository`` (admin) to load or unload, ``read`` on ``metrics`` to
scrape. With a public key, a version folder whose signed manifest does not verify is refused. With
``audit_log``, every load, unload and index call is appended to a hash-chained audit log (who, what,
result); inference calls are not. With ``rate_limit_per_s``, each token gets that many requests per
second (burst: two seconds' worth), then 429 + Retry-After. Errors are ``{"error": "..."}`` with the
status of the `SkylineError` (400 bad request, 401/403 auth, 404 unknown model or version, 429 +
Retry-After when a queue or a token's rate is full, 503 not ready or timed out).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from skyline import __version__
from skyline.errors import ConfigError, NotFoundError
from skyline.security.audit import AuditLog
from skyline.security.http import RateLimiter, install_error_handlers
from skyline.security.http_audit import install_audit
from skyline.security.signing import verify_directory
from skyline.security.tokens import TokenAuthority
from skyline.serving.fastpath import Guard, InferFastPath, infer, parse_version
from skyline.serving.manager import LoadedModel, ModelManager
from skyline.serving.metrics import ServingMetrics
from skyline.serving.openapi import INDEX_REQUEST, INFER_REQUEST, INFER_RESPONSES
from skyline.serving.protocol import HEADER_LENGTH
from skyline.serving.repository import ModelRepository
from skyline.serving.tensors import InvalidRequestError

JSON = "application/json"
PLATFORMS = {"onnx": "onnxruntime_onnx", "torch-export": "pytorch_export"}
MAX_BODY_BYTES = 64 * 1024 * 1024


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def create_app(
    repository: ModelRepository | Path,
    *,
    authority: TokenAuthority | None = None,
    public_key: Path | None = None,
    cores: int | None = None,
    load_on_start: bool = True,
    audit_log: Path | None = None,
    rate_limit_per_s: float | None = None,
) -> FastAPI:
    """The OIP v2 server over ``repository``; see the module docstring for what it enforces."""
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(Path(repository))
    metrics = ServingMetrics()
    verifier = None if public_key is None else (lambda folder: verify_directory(folder, public_key))
    manager = ModelManager(repo, metrics=metrics, cores=cores, verify_directory=verifier)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_on_start:
            await manager.load_all()
        state["ready"] = True
        yield
        state["ready"] = False
        await manager.close()

    app = FastAPI(
        title="skyline inference server (Open Inference Protocol v2)", version=__version__, lifespan=lifespan
    )
    app.state.manager = manager
    install_error_handlers(app, max_body_bytes=MAX_BODY_BYTES)
    if audit_log is not None:
        # Installed before the fast path, which therefore answers inference calls outside it: an
        # inference changes nothing, and an fdatasync per request would cap the throughput.
        install_audit(app, AuditLog(audit_log), authority=authority)
    limiter = None
    if rate_limit_per_s is not None:  # per token, so it needs tokens; a burst of two seconds' worth
        if authority is None:
            raise ConfigError("a per-token rate limit needs tokens; give a token file as well")
        limiter = RateLimiter.per_token(rate_limit_per_s)
    guard = Guard(authority, limiter)
    app.add_middleware(InferFastPath, manager=manager, guard=guard, max_body_bytes=MAX_BODY_BYTES)
    _health_routes(app, state)
    _model_routes(app, manager, guard)
    _repository_routes(app, manager, guard)

    # Not public: queue depths, model names and request rates tell an outsider what runs and how busy it
    # is (docs/security.md). Prometheus scrapes with a viewer token (``authorization`` in its config).
    @app.get("/metrics", responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
    async def prometheus(request: Request) -> Response:
        guard(request.headers.get("authorization"), "read", "metrics")
        for model in manager.loaded().values():
            model.metrics.queue_depth.set(model.batcher.queue_depth)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _health_routes(app: FastAPI, state: dict[str, bool]) -> None:
    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": state["ready"]}, 200 if state["ready"] else 503)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(
            {
                "name": "skyline",
                "version": __version__,
                "extensions": ["model_repository", "binary_tensor_data"],
            }
        )


def _metadata(model: LoadedModel) -> dict[str, Any]:
    m = model.manifest
    return {
        "name": m.name,
        "versions": [str(m.version)],
        "platform": PLATFORMS[m.format],
        "inputs": [t.to_json() for t in m.inputs],
        "outputs": [t.to_json() for t in m.outputs],
        "parameters": {"batching": m.batching.to_json(), "sha256": m.sha256},
    }


def _model_routes(app: FastAPI, manager: ModelManager, guard: Guard) -> None:
    async def metadata(request: Request, name: str, version: str | None = None) -> Response:
        guard(request.headers.get("authorization"), "read", "models", name)
        return _json(_metadata(manager.get(name, parse_version(version))))

    async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
        guard(request.headers.get("authorization"), "read", "models", name)
        number = parse_version(version)
        try:
            manager.get(name, number)
        except NotFoundError:
            if name not in manager.repository.models():
                raise
            return _json({"name": name, "ready": False}, 503)
        return _json({"name": name, "ready": True})

    async def infer_route(request: Request, name: str, version: str | None = None) -> Response:
        # Normally answered by InferFastPath before routing; kept for the OpenAPI document and as a fallback.
        body, header_length = await infer(
            manager, guard, name=name, version=version, authorization=request.headers.get("authorization"),
            header_length=request.headers.get(HEADER_LENGTH), body=await request.body(),
        )  # fmt: skip
        if header_length is None:
            return Response(body, media_type=JSON)
        return Response(
            body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
        )

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_api_route(prefix, metadata, methods=["GET"])
        app.add_api_route(f"{prefix}/ready", model_ready, methods=["GET"])
        app.add_api_route(
            f"{prefix}/infer",
            infer_route,
            methods=["POST"],
            openapi_extra={"requestBody": INFER_REQUEST, "responses": INFER_RESPONSES},
        )


def _index_ready_flag(body: bytes) -> bool:
    """The OIP repository-index request ``{"ready": bool}`` (optional, empty body = all): 400 when not that."""
    if not body.strip():
        return False
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the repository index body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidRequestError('the repository index body must be an object like {"ready": true}')
    ready = request.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidRequestError(f"'ready' must be true or false, got {ready!r:.40}")
    return ready


def _repository_routes(app: FastAPI, manager: ModelManager, guard: Guard) -> None:
    @app.post("/v2/repository/index", openapi_extra={"requestBody": INDEX_REQUEST})
    async def index(request: Request) -> Response:
        guard(request.headers.get("authorization"), "read", "repository")
        only_ready = _index_ready_flag(await request.body())
        loaded = manager.loaded()
        entries = []
        for name in manager.repository.models():
            for version in manager.repository.versions(name):
                is_ready = name in loaded and loaded[name].manifest.version == version
                if is_ready or not only_ready:
                    state = "READY" if is_ready else "UNAVAILABLE"
                    reason = "" if is_ready else manager.failures.get((name, version), "")
                    entries.append({"name": name, "version": str(version), "state": state, "reason": reason})
        return _json(entries)

    @app.post("/v2/repository/models/{name}/load")
    async def load(request: Request, name: str) -> Response:
        guard(request.headers.get("authorization"), "update", "repository", name)
        await asyncio.shield(manager.load(name))  # a client going away does not abort a half-done load
        return _json({})

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(request: Request, name: str) -> Response:
        guard(request.headers.get("authorization"), "update", "repository", name)
        await asyncio.shield(manager.unload(name))
        return _json({})
