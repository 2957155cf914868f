"""The OpenAI-compatible LLM server over a real socket, with the real SmolLM2 model and the native engine.

The official ``openai`` client talks to it unchanged; streaming and not streaming give the same greedy
text; JSON-schema requests sampled at temperature > 0 always parse and validate; /metrics, /health.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.llm.api import create_app
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from tests.llm_fixtures import llm_engine, make_native_engine, smollm  # noqa: F401

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Name three colors.", "Write one short sentence about cats."]


@pytest.fixture(scope="module")
def server(llm_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # noqa: F811
    authority = TokenAuthority(tmp_path_factory.mktemp("llm") / "tokens.json")
    token = authority.issue("alice", "invoker")
    app = create_app(llm_engine, authority=authority)
    with BackgroundServer(app, start_timeout_s=120) as running:
        yield {"url": running.url, "token": token, "app": app, "model": llm_engine.model_name,
               "viewer": authority.issue("grafana", "viewer")}  # fmt: skip


@pytest.fixture(scope="module")
def client(server: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=server["token"], max_retries=0)


def test_the_openai_client_works_unchanged(client: openai.OpenAI, server: dict[str, Any]) -> None:
    model = server["model"]
    assert [m.id for m in client.models.list()] == [model]
    assert client.models.retrieve(model).id == model
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=12, temperature=0
    )
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert "Paris" in (chat.choices[0].message.content or "")
    assert chat.usage is not None and chat.usage.completion_tokens <= 12 and chat.usage.prompt_tokens > 10
    chunks = list(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=12, temperature=0,
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == chat.choices[0].message.content
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0  # the same prompt again: prefix cache hit
    completion = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0, n=2
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].text == completion.choices[1].text and "Paris" in completion.choices[0].text
    texts, finished = ["", ""], [None, None]
    for chunk in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0, n=2, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            finished[choice.index] = choice.finish_reason or finished[choice.index]
    assert texts == [completion.choices[0].text] * 2 and finished == [completion.choices[0].finish_reason] * 2
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], logprobs=True
        )


def _sse(server: dict[str, Any], path: str, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The text and the chunks of a streamed response, read as raw server-sent events."""
    headers = {"authorization": f"Bearer {server['token']}"}
    with httpx.stream(
        "POST", server["url"] + path, json={**body, "stream": True}, headers=headers, timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    key = "delta" if path.endswith("chat/completions") else None
    text = "".join((c["choices"][0][key].get("content") or "") if key else c["choices"][0]["text"]
                   for c in chunks if c["choices"])  # fmt: skip
    return text, chunks


def test_streaming_and_not_streaming_give_the_same_text(server: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {server['token']}"}

    def plain(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.post(
            server["url"] + path, json=body, headers=headers, timeout=120
        ).json()
        return answer

    chats = [{"model": server["model"], "messages": [{"role": "user", "content": p}], "max_tokens": 16, "temperature": 0}
             for p in PROMPTS]  # fmt: skip
    legacy = [{"model": server["model"], "prompt": p, "max_tokens": 12, "temperature": 0} for p in PROMPTS]
    calls = [("/v1/chat/completions", b) for b in chats] + [("/v1/completions", b) for b in legacy]
    with ThreadPoolExecutor(len(calls) * 2) as pool:  # all at once: the engine batches them
        pending_whole = [pool.submit(plain, *c) for c in calls]
        pending_streamed = [pool.submit(_sse, server, *c) for c in calls]
        whole, streamed = [f.result() for f in pending_whole], [f.result() for f in pending_streamed]
    for (path, _), answer, (text, chunks) in zip(calls, whole, streamed, strict=True):
        choice = answer["choices"][0]
        assert text == (choice["message"]["content"] if "chat" in path else choice["text"]), (path, answer)
        assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
        assert all(c["id"] == chunks[0]["id"] for c in chunks)
        if "chat" in path:
            assert text  # (a raw completion may end at once: the model's EOS)
            assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)


_FIELDS = st.sampled_from(
    [{"type": "string", "maxLength": 12}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"},
     {"enum": ["red", "green", "blue"]}, {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
     {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]}]
)  # fmt: skip
_SCHEMAS = st.dictionaries(st.sampled_from(["name", "age", "city", "tags", "ok", "color"]), _FIELDS, min_size=1, max_size=3).flatmap(
    lambda props: st.sets(st.sampled_from(sorted(props))).map(
        lambda required: {"type": "object", "properties": props, "required": sorted(required), "additionalProperties": False}
    )
)  # fmt: skip


@settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schema=_SCHEMAS, seed=st.integers(0, 2**31), temperature=st.floats(0.7, 1.5))
def test_json_schema_requests_always_parse(
    client: openai.OpenAI, server: dict[str, Any], schema: dict[str, Any], seed: int, temperature: float
) -> None:
    answer = client.chat.completions.create(
        model=server["model"], messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
        temperature=temperature, seed=seed, max_tokens=48,
    )  # fmt: skip
    content = answer.choices[0].message.content or ""
    jsonschema.validate(json.loads(content), schema)
    assert answer.choices[0].finish_reason == "stop"


def test_json_object_mode_gives_an_object(client: openai.OpenAI, server: dict[str, Any]) -> None:
    for seed in range(2):
        answer = client.chat.completions.create(
            model=server["model"], messages=[{"role": "user", "content": "List two fruits as JSON."}],
            response_format={"type": "json_object"}, temperature=1.0, seed=seed, max_tokens=32,
        )  # fmt: skip
        assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
    with pytest.raises(openai.BadRequestError, match="pattern"):
        client.chat.completions.create(
            model=server["model"], messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string", "pattern": "a+"}}},
        )  # fmt: skip


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_metrics_and_health(server: dict[str, Any], client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model=server["model"], messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=8, temperature=0
    )
    assert httpx.get(server["url"] + "/health").json() == {"status": "ok"}
    assert httpx.get(server["url"] + "/health/ready").json() == {"ready": True}
    assert httpx.get(server["url"] + "/metrics").status_code == 401
    viewer = {"authorization": f"Bearer {server['viewer']}"}
    text = httpx.get(server["url"] + "/metrics", headers=viewer).text
    assert _metric(text, "skyline_llm_time_to_first_token_seconds_count") >= 1
    assert _metric(text, "skyline_llm_inter_token_latency_seconds_count") >= 1
    assert _metric(text, "skyline_llm_e2e_request_latency_seconds_count") >= 1
    assert _metric(text, "skyline_llm_generation_tokens_total") >= 8
    assert _metric(text, "skyline_llm_prompt_tokens_total") > 0
    assert _metric(text, "skyline_llm_kv_blocks_total") == 256
    assert _metric(text, 'skyline_llm_requests_total{finish_reason="length"') >= 1
    for name in ("num_requests_running", "num_requests_waiting", "kv_blocks_used", "prefix_cache_hit_rate",
                 "prefix_cache_hits_total", "prefix_cache_queries_total", "preemptions_total"):  # fmt: skip
        assert f"skyline_llm_{name}" in text


def test_not_ready_before_warm_up(llm_engine: Any, tmp_path: Path) -> None:  # noqa: F811
    from fastapi.testclient import TestClient

    app = create_app(llm_engine)  # the lifespan (engine thread, warm-up) has not run
    client = TestClient(app)
    assert client.get("/health/ready").status_code == 503
    body = {"model": llm_engine.model_name, "messages": [{"role": "user", "content": "hi"}]}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 503 and answer.json()["error"]["type"] == "service_unavailable"
