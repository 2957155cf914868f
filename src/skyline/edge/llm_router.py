"""An LLM at the edge: a quantized model served on the agent (`skyline.llm`), and a router that sends each
OpenAI-style request either to it or to the cloud's LLM service.

For each request the router estimates both ways' time for its expected length (``max_tokens``, else
``default_max_tokens``) from what it measured:

- here: ``(requests in flight here + 1) × tokens × ms per token`` — the local engine's time per generated
  token (measured on its answers), shared by the requests in its queue;
- cloud: ``round trip + tokens × ms per token`` — both measured on the cloud's answers (and a probe);

and takes the faster (a way not measured yet counts as fast, so both get measured). When the cloud cannot
be reached (refused, timed out, a 5xx) the request is answered here, marked degraded. Answers carry the
header ``x-skyline-answered-by: edge | cloud | edge-degraded``; streaming requests are streamed through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from skyline.errors import ConfigError
from skyline.security.rbac import Principal, authorize

ANSWERED_BY = "x-skyline-answered-by"
_FORWARDED = ("content-type", "cache-control")


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMRouteConfig:
    """Where the two LLMs are and how patient the router is with the cloud."""

    local_url: str  # the agent's own LLM server
    cloud_url: str  # the cloud's OpenAI-compatible service (``skyline llm serve``)
    cloud_model: str  # the model name the cloud serves
    cloud_token: str | None = None
    local_token: str | None = None
    connect_timeout_s: float = 1.0
    cloud_timeout_s: float = 60.0
    default_max_tokens: int = 128
    alpha: float = 0.3  # weight of the newest measurement in the running averages

    def __post_init__(self) -> None:
        if min(self.connect_timeout_s, self.cloud_timeout_s) <= 0 or self.default_max_tokens < 1:
            raise ConfigError("timeouts must be positive and default_max_tokens >= 1")
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")


class Latency:
    """A running average (EWMA) of one way's round trip (ms) and time per generated token (ms)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.rtt_ms: float | None = None
        self.ms_per_token: float | None = None

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else self.alpha * new + (1 - self.alpha) * old

    def observe(self, wall_ms: float, tokens: int) -> None:
        rtt = self.rtt_ms or 0.0
        self.ms_per_token = self._mix(self.ms_per_token, max(0.0, wall_ms - rtt) / max(1, tokens))

    def observe_rtt(self, wall_ms: float) -> None:
        self.rtt_ms = self._mix(self.rtt_ms, wall_ms)


@dataclass(slots=True)
class RouteCounts:
    edge: int = 0
    cloud: int = 0
    degraded: int = 0


class LLMRouter:
    """Routes chat/completion requests (see the module docstring); `close` releases its connections."""

    def __init__(self, config: LLMRouteConfig) -> None:
        self.config = config
        self.local, self.cloud = Latency(config.alpha), Latency(config.alpha)
        self.in_flight_here = 0
        self.counts = RouteCounts()
        timeout = httpx.Timeout(config.cloud_timeout_s, connect=config.connect_timeout_s)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    def estimates_ms(self, tokens: int) -> tuple[float, float]:
        """(here, cloud) expected milliseconds for a request of ``tokens`` generated tokens."""
        here = (self.in_flight_here + 1) * tokens * (self.local.ms_per_token or 0.0)
        cloud = (self.cloud.rtt_ms or 0.0) + tokens * (self.cloud.ms_per_token or 0.0)
        return here, cloud

    def choose(self, body: dict[str, Any]) -> str:
        """``edge`` or ``cloud`` for this request body."""
        asked = body.get("max_tokens") or body.get("max_completion_tokens")
        # Only to estimate: an invalid value is the LLM server's to refuse (4xx), not a reason to fail here.
        tokens = self.config.default_max_tokens
        if isinstance(asked, int) and not isinstance(asked, bool) and 0 < asked < 2**31:
            tokens = asked
        here, cloud = self.estimates_ms(tokens)
        if self.local.ms_per_token is None:
            return "edge"  # measure both ways before trusting either
        if self.cloud.ms_per_token is None:
            return "cloud"
        return "edge" if here <= cloud else "cloud"

    async def probe(self) -> None:
        """Measure the cloud's round trip with a cheap call (its model list); unreachable is not an error."""
        started = time.perf_counter()
        try:
            response = await self._http.get(
                f"{self.config.cloud_url}/v1/models", headers=self._headers("cloud")
            )
        except httpx.HTTPError:
            return
        if response.status_code < 500:
            self.cloud.observe_rtt((time.perf_counter() - started) * 1e3)

    def _headers(self, way: str) -> dict[str, str]:
        token = self.config.cloud_token if way == "cloud" else self.config.local_token
        return {"authorization": f"Bearer {token}"} if token else {}

    def _request(self, way: str, path: str, body: dict[str, Any]) -> httpx.Request:
        url = self.config.cloud_url if way == "cloud" else self.config.local_url
        payload = {**body, "model": self.config.cloud_model} if way == "cloud" else body
        return self._http.build_request("POST", f"{url}{path}", json=payload, headers=self._headers(way))

    async def forward(self, path: str, body: dict[str, Any]) -> tuple[httpx.Response, str, float]:
        """Send the request the chosen way (the cloud failing: here, degraded); returns the open response
        (the caller reads or streams it, then calls `finished`), who answers, and when it started."""
        way = self.choose(body)
        if way == "cloud":
            started = time.perf_counter()
            try:
                response = await self._http.send(self._request("cloud", path, body), stream=True)
                if response.status_code < 500:
                    self.counts.cloud += 1
                    return response, "cloud", started
                await response.aclose()
            except httpx.HTTPError:
                pass
            self.counts.degraded += 1
            way = "edge-degraded"
        self.in_flight_here += 1
        started = time.perf_counter()
        try:
            response = await self._http.send(self._request("edge", path, body), stream=True)
        except BaseException:
            self.in_flight_here -= 1
            raise
        if way == "edge":
            self.counts.edge += 1
        return response, way, started

    def finished(self, way: str, started: float, tokens: int) -> None:
        """A request of ``tokens`` generated tokens answered ``way`` ended: learn from its time."""
        wall_ms = (time.perf_counter() - started) * 1e3
        if way == "cloud":
            self.cloud.observe(wall_ms, tokens)
        else:
            self.in_flight_here -= 1
            self.local.observe(wall_ms, tokens)

    async def stream(self, response: httpx.Response, way: str, started: float) -> AsyncIterator[bytes]:
        """The response's bytes as they come; counts streamed chunks as tokens (one per ``data:`` event)."""
        tokens = 0
        try:
            async for chunk in response.aiter_raw():
                tokens += chunk.count(b"data: ") if b"data: " in chunk else 0
                yield chunk
        finally:
            await response.aclose()
            self.finished(way, started, max(1, tokens - 1))  # the last event is [DONE]

    def status(self) -> dict[str, Any]:
        here, cloud = self.estimates_ms(self.config.default_max_tokens)
        return {
            "llm_answered_edge": self.counts.edge, "llm_answered_cloud": self.counts.cloud,
            "llm_degraded": self.counts.degraded, "llm_in_flight_here": self.in_flight_here,
            "llm_edge_ms_per_token": self.local.ms_per_token, "llm_cloud_ms_per_token": self.cloud.ms_per_token,
            "llm_cloud_rtt_ms": self.cloud.rtt_ms, "llm_estimate_edge_ms": here, "llm_estimate_cloud_ms": cloud,
        }  # fmt: skip


async def _read_all(router: LLMRouter, response: httpx.Response, way: str, started: float) -> bytes:
    """A non-streamed answer: its body, learning from its ``usage.completion_tokens``."""
    try:
        body = await response.aread()
    finally:
        await response.aclose()
    try:
        tokens = int(json.loads(body)["usage"]["completion_tokens"])
    except (ValueError, KeyError, TypeError):
        tokens = 1
    router.finished(way, started, tokens)
    return body


def add_llm_routes(app: FastAPI, router: LLMRouter, invoke: Any) -> None:
    """``POST /v1/chat/completions`` and ``/v1/completions`` on ``app``, routed by ``router`` (a token that
    invokes models); the routed server's errors (4xx JSON) are passed through as they are."""

    async def route(request: Request, path: str, who: Principal) -> Response:
        authorize(who, "invoke", "models", model=router.config.cloud_model)  # the token's model scope
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python recurses
            raise ConfigError("the body is not JSON; send an OpenAI chat or completion request") from None
        if not isinstance(body, dict):
            raise ConfigError("the body must be a JSON object (an OpenAI chat or completion request)")
        response, way, started = await router.forward(path, body)
        headers = {k: v for k, v in response.headers.items() if k.lower() in _FORWARDED}
        headers[ANSWERED_BY] = way
        if body.get("stream"):
            return StreamingResponse(
                router.stream(response, way, started), status_code=response.status_code, headers=headers
            )
        content = await _read_all(router, response, way, started)
        return Response(content, status_code=response.status_code, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat(request: Request, who: Principal = invoke) -> Response:
        return await route(request, "/v1/chat/completions", who)

    @app.post("/v1/completions")
    async def completions(request: Request, who: Principal = invoke) -> Response:
        return await route(request, "/v1/completions", who)


@asynccontextmanager
async def probing(router: LLMRouter, every_s: float = 10.0) -> AsyncIterator[None]:
    """While the app runs: probe the cloud's round trip every ``every_s``; on shutdown close the router."""

    async def loop() -> None:
        while True:
            await router.probe()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await router.close()
