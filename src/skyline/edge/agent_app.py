"""The agent's local HTTP API: the Open Inference Protocol v2 of the inference server (the same request and
response code, `skyline.serving.protocol`), plus health, status and labelled records.

Deny by default, like every skyline server: ``/health`` is public; ``/v1/status`` needs a role that reads
metrics, inference and labelled records a role that invokes the model (``invoker``, ``edge``, ``admin``…),
with tokens of the agent's own `TokenAuthority` (a token file next to its store, `skyline token create
--tokens ...`). Request bodies are capped (413 above ``max_body_bytes``). Routes:

- ``POST /v2/models/{model}/infer`` — OIP v2 (JSON or binary tensors); the response's ``parameters.sources``
  says who answered each row;
- ``POST /v1/labels`` — ``{"inputs": [one OIP tensor], "labels": [int, ...]}``: the model in use predicts the
  rows (its accuracy is reported per version), they join the agent's training data and are uplinked;
- with an LLM at the edge, OpenAI's ``POST /v1/chat/completions`` and ``/v1/completions``, each answered by
  the agent's own quantized LLM or the cloud's LLM service (`skyline.edge.llm_router`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from skyline.edge.agent import EdgeAgent
from skyline.edge.llm_router import LLMRouter, add_llm_routes, probing
from skyline.errors import ConfigError, NotFoundError
from skyline.security.http import DEFAULT_MAX_BODY_BYTES, install_error_handlers, require
from skyline.security.rbac import Principal, authorize
from skyline.security.tokens import TokenAuthority
from skyline.serving.protocol import HEADER_LENGTH, encode_response, parse_request


def _one_input(body: bytes, header_length: str | None) -> tuple[Any, Any]:
    request = parse_request(body, header_length)
    if len(request.inputs) != 1:
        raise ConfigError(f"the edge agent's models take one input; the request has {len(request.inputs)}")
    (array,) = request.inputs.values()
    return request, np.asarray(array, dtype=np.float32)


def create_agent_app(
    agent: EdgeAgent,
    *,
    authority: TokenAuthority,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    llm: LLMRouter | None = None,
) -> FastAPI:
    """Routes: ``GET /health``, ``GET /v1/status``, ``POST /v2/models/{model}/infer``, ``POST /v1/labels``;
    with ``llm``, OpenAI's ``POST /v1/chat/completions`` and ``/v1/completions`` (`skyline.edge.llm_router`)."""
    app = FastAPI(
        title=f"skyline edge agent {agent.config.name}", lifespan=(lambda _: probing(llm)) if llm else None
    )
    install_error_handlers(app, max_body_bytes=max_body_bytes)
    # Dependencies as defaults, not Annotated: this module uses `from __future__ import annotations`.
    invoke = Depends(require(authority, "invoke", "models"))
    if llm is not None:
        add_llm_routes(app, llm, invoke)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok" if agent.ready else "syncing", "model_version": agent.model_version}

    @app.get("/v1/status", dependencies=[Depends(require(authority, "read", "metrics"))])
    def status() -> dict[str, Any]:
        return {**agent.status(), **(llm.status() if llm is not None else {})}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request, who: Principal = invoke) -> Response:
        authorize(who, "invoke", "models", model=name)  # the token's model scope
        if name != agent.config.model:
            raise NotFoundError(f"this agent serves model {agent.config.model!r}, not {name!r}")
        parsed, x = _one_input(await request.body(), request.headers.get(HEADER_LENGTH))
        probs, sources = await run_in_threadpool(agent.infer, x)
        body, header_length = encode_response(
            model=name, version=agent.model_version or 0, request=parsed, outputs={"probs": probs},
            order=["probs"], parameters={"sources": sources},
        )  # fmt: skip
        if header_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
        )

    @app.post("/v1/labels")
    async def labels(request: Request, who: Principal = invoke) -> dict[str, Any]:
        authorize(who, "invoke", "models", model=agent.config.model)
        body = await request.body()
        _, x = _one_input(body, request.headers.get(HEADER_LENGTH))
        truth = _labels(body, len(x))
        predicted = await run_in_threadpool(agent.label, x, truth)
        return {"model_version": agent.model_version, "predicted": predicted.tolist(), "labelled": len(truth)}

    return app


def _labels(body: bytes, rows: int) -> Any:
    import orjson

    try:
        values = orjson.loads(body).get("labels")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"the body is not a JSON object with 'labels': {exc}") from None
    if (
        not isinstance(values, list)
        or len(values) != rows
        or not all(isinstance(v, int) and v >= 0 for v in values)
    ):
        raise ConfigError(
            f"'labels' must be a list of {rows} class indices (integers >= 0), one per input row"
        )
    return np.asarray(values, dtype=np.int64)


def serve_forever(
    config: Any,
    *,
    tokens: Any,
    port: int = 0,
    tls: tuple[Any, Any] | None = None,
    duration_s: float | None = None,
    announce: Any = print,
    llm: EdgeLLM | None = None,
) -> None:
    """Run the agent (`EdgeAgent`, an `AgentConfig`) and its local API on 127.0.0.1:``port`` until
    SIGTERM/SIGINT (or ``duration_s``); the token file ``tokens`` prints a first admin token once. With
    ``llm``, the agent also serves a quantized LLM and routes LLM requests between it and the cloud."""
    authority = TokenAuthority(tokens)
    admin_token = authority.bootstrap_admin()
    if admin_token is not None:
        announce(f"local API admin token (shown once, store it now): {admin_token}")
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(_local_llm(llm)) if llm is not None else None
        agent = EdgeAgent(config).start()
        stack.callback(agent.stop)
        _serve(agent, authority, router, port=port, tls=tls, duration_s=duration_s, announce=announce)
    announce("edge agent stopped")


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeLLM:
    """The agent's own LLM (``model``, ``quant`` of `skyline.llm.engine.EngineConfig`) and the cloud's."""

    cloud_url: str
    cloud_model: str
    cloud_token: str | None = None
    model: str = "smollm2-135m"
    quant: str = "int8"  # 96.7% greedy agreement with float32 (int4: 89.1%), faster than int4 at one stream

    def __post_init__(self) -> None:
        from typing import get_args

        from skyline.llm.engine import Quantization

        if self.quant not in get_args(Quantization):
            raise ConfigError(
                f"--llm-quant must be one of {', '.join(get_args(Quantization))}, got {self.quant!r}"
            )
        if not self.cloud_url.startswith(("http://", "https://")):
            raise ConfigError(f"--llm-cloud must be an http(s) URL, got {self.cloud_url!r}")


@contextlib.contextmanager
def _local_llm(llm: EdgeLLM) -> Iterator[LLMRouter]:
    """The agent's LLM server on a free loopback port (no tokens: only the agent's API, which checks
    tokens, calls it) and a router in front of it and the cloud's."""
    from skyline.edge.llm_router import LLMRouteConfig
    from skyline.llm.engine import EngineConfig
    from skyline.llm.server import LLMServerConfig, running_server

    engine = EngineConfig(model=llm.model, quant=llm.quant, threads=1)  # type: ignore[arg-type]
    with running_server(LLMServerConfig(engine=engine, port=0)) as server:
        yield LLMRouter(
            LLMRouteConfig(
                local_url=server.url, cloud_url=llm.cloud_url, cloud_model=llm.cloud_model,
                cloud_token=llm.cloud_token,
            )
        )  # fmt: skip


def _serve(
    agent: EdgeAgent,
    authority: TokenAuthority,
    router: LLMRouter | None,
    *,
    port: int,
    tls: tuple[Any, Any] | None,
    duration_s: float | None,
    announce: Any,
) -> None:
    from skyline.serving.server import BackgroundServer, wait_for_stop_signal

    config = agent.config
    app = create_agent_app(agent, authority=authority, llm=router)
    with BackgroundServer(app, port=port, tls=tls) as server:
        fl = f", federated via {config.federated.superlink}" if config.federated is not None else ""
        llm = ", LLM routed between here and the cloud" if router is not None else ""
        announce(
            f"edge agent {config.name}: model {config.model}, strategy {config.strategy}, store "
            f"{config.store}, API {server.url}{fl}{llm}"
        )
        wait_for_stop_signal(duration_s)
