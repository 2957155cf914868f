"""An LLM at the edge: the agent's quantized SmolLM2 and the cloud's LLM service, both real skyline LLM servers on
127.0.0.1, with the router in front: both ways get measured, each request goes the faster way for its
length and the local queue, streams pass through, and with the cloud gone the edge answers, degraded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from skyline.edge.llm_router import ANSWERED_BY, LLMRouteConfig, LLMRouter, add_llm_routes, probing
from skyline.llm.server import LLMServerConfig, running_server
from skyline.security.http import install_error_handlers, require
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from tests.llm_fixtures import make_native_engine, smollm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def routed(
    make_native_engine: Callable[..., Any],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str], Any, LLMRouter, dict[str, str]]]:
    tokens = TokenAuthority(tmp_path / "tokens.json")
    headers = {"authorization": f"Bearer {tokens.issue('app', Role.INVOKER)}"}
    other_model = {"authorization": f"Bearer {tokens.issue('other', Role.INVOKER, models=['mlp'])}"}
    with (
        running_server(LLMServerConfig(port=0), engine=make_native_engine()) as cloud,
        running_server(LLMServerConfig(port=0), engine=make_native_engine(quant="int8")) as local,
    ):
        router = LLMRouter(
            LLMRouteConfig(local_url=local.url, cloud_url=cloud.url, cloud_model="smollm2-135m")
        )
        app = FastAPI(lifespan=lambda _: probing(router))
        install_error_handlers(app)
        add_llm_routes(app, router, Depends(require(tokens, "invoke", "models")))
        with BackgroundServer(app) as agent:
            yield agent.url, headers, cloud, router, other_model


def _chat(url: str, headers: dict[str, str], max_tokens: int, **extra: Any) -> httpx.Response:
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": max_tokens,
    }
    return httpx.post(f"{url}/v1/chat/completions", json={**body, **extra}, headers=headers, timeout=120)


def test_requests_go_the_faster_way_and_the_edge_answers_when_the_cloud_is_gone(
    routed: tuple[str, dict[str, str], Any, LLMRouter, dict[str, str]],
) -> None:
    url, headers, cloud, router, other_model = routed
    assert httpx.post(f"{url}/v1/chat/completions", json={}).status_code == 401  # the agent's tokens
    assert _chat(url, other_model, 4).status_code == 403  # a token scoped to another model
    first, second = _chat(url, headers, 4), _chat(url, headers, 4)
    assert (first.headers[ANSWERED_BY], second.headers[ANSWERED_BY]) == ("edge", "cloud")  # both measured
    assert (
        first.json()["choices"][0]["message"]["content"] and second.json()["usage"]["completion_tokens"] >= 1
    )
    assert router.local.ms_per_token and router.cloud.ms_per_token
    for tokens in (1, 16):
        here, there = router.estimates_ms(tokens)
        answered = _chat(url, headers, tokens).headers[ANSWERED_BY]
        assert answered == ("edge" if here <= there else "cloud"), (tokens, here, there)
    router.in_flight_here = 1_000  # a long local queue: the cloud is faster for any length
    assert router.choose({"max_tokens": 8}) == "cloud"
    router.in_flight_here = 0
    streamed = _chat(url, headers, 4, stream=True)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.rstrip().endswith("data: [DONE]")
    cloud.stop()  # the cloud goes away
    router.local.ms_per_token = 1e6  # and the edge looks slow: the router still tries the cloud first
    gone = _chat(url, headers, 4)
    assert gone.status_code == 200 and gone.headers[ANSWERED_BY] == "edge-degraded"
    assert gone.json()["choices"][0]["message"]["content"] and router.counts.degraded == 1
