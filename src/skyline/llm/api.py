"""The LLM server's HTTP face: OpenAI's chat completions, completions and models, plus health and /metrics.

``create_app(engine)`` wraps an `Engine` in an `AsyncEngine` (started with the app, warmed up before
``/health/ready`` answers 200) and serves:

- ``POST /v1/chat/completions`` (the model's chat template), ``POST /v1/completions``, streamed as
  server-sent events with ``stream: true``; ``response_format`` ``json_object`` or ``json_schema`` for
  JSON that always parses (`skyline.llm.structured`); errors in OpenAI's shape (`api_errors`).
- ``GET /v1/models`` and ``GET /v1/models/{model}``.
- ``GET /health`` (live), ``GET /health/ready`` (503 until warmed up), ``GET /metrics`` (Prometheus).

With a `TokenAuthority`, every route but health needs a bearer token, checked by `skyline.security`'s one
permission table: ``invoke`` on ``models`` to generate (scoped per model), ``read`` on ``models`` to list
them, ``read`` on ``metrics`` to scrape. With ``rate_limit_per_s`` each token gets that many requests per
second (burst: two seconds' worth), then 429 + Retry-After; so does everyone once ``max_waiting``
requests wait for the running batch. A client that disconnects aborts its requests (their KV blocks are
freed at the engine's next step).
"""

# No `from __future__ import annotations`: FastAPI must resolve the `Annotated[..., Depends(guard)]` of the
# routes at runtime, and string annotations cannot see the guards made inside create_app.

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask

from skyline import __version__
from skyline.errors import ConfigError, NotFoundError, UnavailableError
from skyline.llm.api_errors import OpenAIBodySizeLimit, install_openai_errors, validation_error
from skyline.llm.api_prepare import Prepared, prepare_chat, prepare_completion
from skyline.llm.api_protocol import ChatCompletionRequest, CompletionRequest, openapi_components
from skyline.llm.api_stream import collect, sse_events
from skyline.llm.async_engine import AsyncEngine, RequestStream
from skyline.llm.engine import Engine, GenerationRequest, SamplingParams
from skyline.llm.metrics import LLMMetrics
from skyline.llm.structured import vocabulary_of
from skyline.security.http import RateLimiter, require
from skyline.security.rbac import Principal, authorize
from skyline.security.tokens import TokenAuthority

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_Body = TypeVar("_Body", bound=BaseModel)
_Guard = Callable[..., Awaitable[Principal | None]]


def _guard(authority: TokenAuthority | None, action: str, kind: str, limiter: RateLimiter | None) -> _Guard:
    if authority is None:  # `skyline llm serve --insecure-no-auth-local-only`: loopback only

        async def open_access() -> None:
            return None

        return open_access
    return require(authority, action, kind, limiter=limiter)


async def _parse(request: Request, model: type[_Body]) -> _Body:
    """The body as ``model``, whatever its content type (orjson caps nesting; the input is never echoed)."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError("the request body must be a JSON object")
    return model.model_validate(data)


async def _disconnected(request: Request) -> None:
    """Return when the client closes its connection (the body has been read: only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _close_all(streams: list[RequestStream]) -> None:
    for stream in streams:
        stream.close()


async def _respond(request: Request, llm: AsyncEngine, prepared: Prepared) -> Response:
    streams: list[RequestStream] = []
    try:
        streams.extend(llm.submit(r) for r in prepared.requests)
    except BaseException:
        _close_all(streams)
        raise
    if prepared.stream:
        return StreamingResponse(
            sse_events(prepared, streams), media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            background=BackgroundTask(_close_all, streams),  # runs after a disconnect too
        )  # fmt: skip
    work = asyncio.ensure_future(collect(prepared, streams))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        _close_all(streams)
    if work.cancelled():
        return Response(status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(work.result())


def _check_model(model: str, served: str, who: Principal | None, action: str) -> None:
    if model != served:
        raise NotFoundError(f"model {model!r} is not served here; this server serves {served!r}")
    if who is not None:
        authorize(who, action, "models", model=model)


async def _warm_up(llm: AsyncEngine, engine: Engine) -> None:
    """One short greedy generation (the first step pays for lazy initialization) and the vocabulary
    that JSON constraints use, before readiness turns true."""
    prompt = tuple(engine.tokenizer.backend_tokenizer.encode("Hello").ids) or (0,)
    request = GenerationRequest(
        request_id="warm-up", prompt_token_ids=prompt, params=SamplingParams(max_tokens=2, temperature=0.0)
    )
    async for _ in llm.submit(request):
        pass
    await asyncio.to_thread(vocabulary_of, engine.tokenizer)


def create_app(
    engine: Engine,
    *,
    authority: TokenAuthority | None = None,
    rate_limit_per_s: float | None = None,
    max_waiting: int = 64,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The OpenAI-compatible server over ``engine``; see the module docstring for what it enforces."""
    if rate_limit_per_s is not None and authority is None:
        raise ConfigError("a per-token rate limit needs tokens; give a token file as well")
    llm: AsyncEngine
    metrics = LLMMetrics(engine.model_name, stats=lambda: llm.stats(), waiting=lambda: llm.waiting)
    llm = AsyncEngine(engine, max_waiting=max_waiting, on_finish=metrics.observe)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        llm.start()
        try:
            await _warm_up(llm, engine)
            state["ready"] = True
            yield
        finally:
            state["ready"] = False
            await llm.stop()

    app = FastAPI(title="skyline LLM server (OpenAI-compatible)", version=__version__, lifespan=lifespan)
    app.state.llm = llm
    install_openai_errors(app)
    app.add_middleware(OpenAIBodySizeLimit, max_body_bytes=max_body_bytes)
    limiter = None
    if rate_limit_per_s is not None:
        limiter = RateLimiter.per_token(rate_limit_per_s)
    guards = {
        (action, kind): _guard(authority, action, kind, limiter)
        for action, kind in (("invoke", "models"), ("read", "models"), ("read", "metrics"))
    }
    _generation_routes(app, llm, engine, state, guards[("invoke", "models")])
    _info_routes(app, engine, state, metrics, guards)
    _document_bodies(app)
    return app


def _generation_routes(
    app: FastAPI, llm: AsyncEngine, engine: Engine, state: dict[str, bool], invoke: _Guard
) -> None:
    def ready() -> None:
        if not state["ready"]:
            raise UnavailableError("the model is still warming up; retry when /health/ready answers 200")

    async def generate(request: Request, body_type: type[_Body], who: Principal | None) -> Response:
        try:
            body = await _parse(request, body_type)
        except ValidationError as exc:
            return validation_error(list(exc.errors()))
        _check_model(body.model, engine.model_name, who, "invoke")  # type: ignore[attr-defined]
        ready()
        # Tokenizing a prompt of megabytes takes a while: off the event loop, so streams keep flowing.
        if isinstance(body, ChatCompletionRequest):
            prepared = await asyncio.to_thread(prepare_chat, body, engine)
        else:
            assert isinstance(body, CompletionRequest)
            prepared = await asyncio.to_thread(prepare_completion, body, engine)
        return await _respond(request, llm, prepared)

    @app.post("/v1/chat/completions", openapi_extra=_body_doc("ChatCompletionRequest"))
    async def chat_completions(
        request: Request, who: Annotated[Principal | None, Depends(invoke)]
    ) -> Response:
        return await generate(request, ChatCompletionRequest, who)

    @app.post("/v1/completions", openapi_extra=_body_doc("CompletionRequest"))
    async def completions(request: Request, who: Annotated[Principal | None, Depends(invoke)]) -> Response:
        return await generate(request, CompletionRequest, who)


def _info_routes(
    app: FastAPI,
    engine: Engine,
    state: dict[str, bool],
    metrics: LLMMetrics,
    guards: dict[tuple[str, str], _Guard],
) -> None:
    created = int(time.time())
    read_models, read_metrics = guards[("read", "models")], guards[("read", "metrics")]
    card = {"id": engine.model_name, "object": "model", "created": created, "owned_by": "skyline",
            "max_model_len": engine.max_model_len}  # fmt: skip

    @app.get("/v1/models")
    async def list_models(who: Annotated[Principal | None, Depends(read_models)]) -> dict[str, Any]:
        visible = who is None or not who.models or engine.model_name in who.models
        return {"object": "list", "data": [card] if visible else []}

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str, who: Annotated[Principal | None, Depends(read_models)]) -> dict[str, Any]:
        _check_model(model, engine.model_name, who, "read")
        return card

    @app.get("/health")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    # Not public: request rates and queue depths tell an outsider how busy the server is (docs/security.md).
    @app.get("/metrics", responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
    async def prometheus(who: Annotated[Principal | None, Depends(read_metrics)]) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")


def _body_doc(name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _document_bodies(app: FastAPI) -> None:
    """Add the request bodies' schemas to the OpenAPI document (the routes parse bodies themselves)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(openapi_components())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
