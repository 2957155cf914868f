"""Who may call the LLM server, what it refuses, and what it does when clients go away or pile up.

Real sockets on 127.0.0.1, the real model: the role matrix (security's one permission table), malformed
and fuzzed bodies (always a 4xx in OpenAI's error shape, never a 5xx), 429 + Retry-After from a full
waiting queue and from a token's rate limit, and a client that disconnects mid-generation (streaming or
not) aborts its request and the engine gets its KV blocks back.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.llm.api import create_app
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from tests.llm_fixtures import llm_engine, make_native_engine, smollm  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(llm_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # noqa: F811
    authority = TokenAuthority(tmp_path_factory.mktemp("llm-access") / "tokens.json")
    tokens = {
        role: authority.issue(f"{role}-1", role)
        for role in ("admin", "operator", "viewer", "agent", "invoker", "edge")
    }
    tokens["scoped"] = authority.issue("bob", "invoker", models=["another-model"])
    app = create_app(llm_engine, authority=authority)
    with BackgroundServer(app, start_timeout_s=120) as running:
        yield {"url": running.url, "tokens": tokens, "app": app, "model": llm_engine.model_name}


def _chat(model: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "temperature": 0,
        **fields,
    }


def _call(
    server: dict[str, Any], method: str, path: str, caller: str | None, body: Any = None
) -> httpx.Response:
    token = {"forged": "sky_0123456789ab_forged", "malformed": "not-a-token"}.get(caller or "")
    token = server["tokens"].get(caller, token)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server["url"] + path, json=body, headers=headers, timeout=60)


def test_role_matrix(server: dict[str, Any]) -> None:
    model = server["model"]
    ops = {
        "invoke": ("POST", "/v1/chat/completions", _chat(model)),
        "complete": ("POST", "/v1/completions", {"model": model, "prompt": "Hi", "max_tokens": 1}),
        "models": ("GET", "/v1/models", None),
        "metrics": ("GET", "/metrics", None),
    }
    # role → the operations allowed (security.rbac: invoke/read on models, read on metrics)
    allowed = {
        "admin": {"invoke", "complete", "models", "metrics"},
        "operator": {"invoke", "complete", "models", "metrics"},
        "viewer": {"models", "metrics"},
        "agent": {"metrics"},
        "invoker": {"invoke", "complete", "models"},
        "edge": {"invoke", "complete", "models"},
    }
    for caller in [*allowed, None, "forged", "malformed"]:
        for name, (method, path, body) in ops.items():
            answer = _call(server, method, path, caller, body)
            expected = (
                200 if name in allowed.get(caller or "", set()) else 401 if caller not in allowed else 403
            )
            assert answer.status_code == expected, (caller, name, answer.text)
            if expected == 401:
                assert answer.headers["www-authenticate"].startswith("Bearer")
            if expected != 200:
                error = answer.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert all(token not in error["message"] for token in server["tokens"].values())
    # a token scoped to other models may not touch this one, nor see it listed
    assert _call(server, *ops["invoke"][:2], "scoped", ops["invoke"][2]).status_code == 403
    assert _call(server, "GET", "/v1/models", "scoped").json()["data"] == []
    assert _call(server, "GET", "/health", None).status_code == 200


BAD_BODIES: list[tuple[str, bytes | dict[str, Any], str | None]] = [
    ("not json", b"{not json", None),
    ("a JSON array", b"[1, 2]", None),
    ("deeply nested", b"[" * 5000 + b"]" * 5000, None),
    ("binary", bytes(range(256)), None),
    ("no messages", {"model": "M"}, "messages"),
    ("empty messages", {"model": "M", "messages": []}, "messages"),
    ("a tool message", {"model": "M", "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ("unknown field", {"model": "M", "messages": [{"role": "user", "content": "x"}], "foo": 1}, "foo"),
    ("temperature 3", _chat("M", temperature=3), "temperature"),
    ("top_p 0", _chat("M", top_p=0), "top_p"),
    ("n 0", _chat("M", n=0), "n"),
    ("max_tokens 0", _chat("M", max_tokens=0), "max_tokens"),
    ("max_tokens past the context", _chat("M", max_tokens=10**6), None),
    ("five stop strings", _chat("M", stop=["a", "b", "c", "d", "e"]), "stop"),
    ("an empty stop string", _chat("M", stop=""), "stop"),
    ("negative seed", _chat("M", seed=-1), "seed"),
    ("penalties", _chat("M", presence_penalty=1.0), None),
    ("logit_bias", _chat("M", logit_bias={"1": 5}), None),
    ("tools", _chat("M", tools=[{"type": "function", "function": {"name": "f"}}]), None),
    ("unknown response_format", _chat("M", response_format={"type": "yaml"}), "response_format.type"),
    ("json_schema without schema name", _chat("M", response_format={"type": "json_schema", "json_schema": {}}), None),
    ("schema with pattern", _chat("M", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a"}}}), None),
    ("json with stop", _chat("M", response_format={"type": "json_object"}, stop=["}"]), None),
    ("stream_options without stream", _chat("M", stream_options={"include_usage": True}), None),
    ("string max_tokens", _chat("M", max_tokens="many"), "max_tokens"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "body", "param"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_bodies_are_400_in_openai_shape(
    server: dict[str, Any], label: str, body: bytes | dict[str, Any], param: str | None
) -> None:
    headers = {"authorization": f"Bearer {server['tokens']['invoker']}", "content-type": "application/json"}
    content = (
        body
        if isinstance(body, bytes)
        else json.dumps(body).replace('"M"', json.dumps(server["model"])).encode()
    )
    answer = httpx.post(server["url"] + "/v1/chat/completions", content=content, headers=headers, timeout=60)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


def test_oversized_bodies_and_unknown_routes_answer_in_openai_shape(server: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {server['tokens']['invoker']}", "content-type": "application/json"}
    big = httpx.post(
        server["url"] + "/v1/completions", content=b" " * (9 * 1024 * 1024), headers=headers, timeout=60
    )
    assert big.status_code == 413 and "error" in big.json()
    missing = httpx.get(server["url"] + "/v1/embeddings", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8),
                 st.lists(st.integers(-5, 60000), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))  # fmt: skip
_FUZZ_FIELDS = ["model", "messages", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stop", "seed",
                "response_format", "top_k", "min_tokens", "ignore_eos", "priority", "stream_options", "max_completion_tokens"]  # fmt: skip


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
    changes=st.dictionaries(st.sampled_from(_FUZZ_FIELDS), _ANY, max_size=3),
    dropped=st.sets(st.sampled_from(["model", "messages", "prompt"]), max_size=2),
)
def test_fuzzed_bodies_never_get_a_server_error(
    server: dict[str, Any], path: str, changes: dict[str, Any], dropped: set[str]
) -> None:
    """A valid body (one token, greedy) with up to three fields replaced by anything and some dropped."""
    body: dict[str, Any] = {"model": server["model"], "max_tokens": 1, "temperature": 0}
    body.update({"messages": [{"role": "user", "content": "Hi"}]} if "chat" in path else {"prompt": "Hi"})
    body.update(changes)
    for name in dropped:
        body.pop(name, None)
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] > 2:
        body["max_tokens"] = 2  # keep accepted cases short (the default is the rest of the context)
    body.pop("max_completion_tokens", None)
    headers = {"authorization": f"Bearer {server['tokens']['invoker']}"}
    content = json.dumps(body, allow_nan=True).encode()
    answer = httpx.post(server["url"] + path, content=content, headers=headers, timeout=120)
    assert answer.status_code < 500, (body, answer.text)
    if answer.status_code >= 400:
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _raw_request(url: str, token: str, body: dict[str, Any]) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(payload)}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + payload)
    return sock


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "not-streaming"])
def test_a_client_that_disconnects_aborts_and_frees_its_blocks(server: dict[str, Any], stream: bool) -> None:
    llm = server["app"].state.llm
    long = _chat(server["model"], max_tokens=2000, ignore_eos=True, stream=stream)
    sock = _raw_request(server["url"], server["tokens"]["invoker"], long)
    try:
        if stream:
            received = b""
            while received.count(b"data: ") < 3:  # the role chunk and two tokens
                received += sock.recv(4096)
            assert b"200 OK" in received
        _wait_until(lambda: llm.stats().running == 1 and llm.stats().kv_blocks_used > 0)
        generated_before = llm.stats().generated_tokens_total
    finally:
        sock.close()
    _wait_until(lambda: llm.stats().running == 0 and llm.stats().kv_blocks_used == 0)
    assert llm.stats().generated_tokens_total - generated_before < 1000  # stopped long before 2000 tokens
    assert llm.waiting == 0


@pytest.fixture
def tight_server(
    make_native_engine: Callable[..., Any],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """One running slot, one waiting place, and a rate limit of one request per two seconds per token."""
    authority = TokenAuthority(tmp_path_factory.mktemp("llm-tight") / "tokens.json")
    app = create_app(make_native_engine(max_num_seqs=1, kv_blocks=64), authority=authority, max_waiting=1,
                     rate_limit_per_s=0.5)  # fmt: skip
    tokens = [authority.issue(f"user-{i}", "invoker") for i in range(4)]
    with BackgroundServer(app, start_timeout_s=120) as running:
        yield {"url": running.url, "app": app, "tokens": tokens, "model": app.state.llm.engine.model_name}


def test_a_full_waiting_queue_and_a_spent_rate_limit_answer_429_with_retry_after(
    tight_server: dict[str, Any],
) -> None:
    url, tokens, llm = tight_server["url"], tight_server["tokens"], tight_server["app"].state.llm
    long = _chat(
        tight_server["model"], max_tokens=900, ignore_eos=True, stream=True
    )  # 64 blocks: 1024 tokens
    running = _raw_request(url, tokens[0], long)
    waiting = None
    try:
        _wait_until(lambda: llm.stats().running == 1)
        waiting = _raw_request(url, tokens[1], long)  # takes the one waiting place
        _wait_until(lambda: llm.waiting == 1)
        refused = httpx.post(
            url + "/v1/chat/completions", json=long, headers={"authorization": f"Bearer {tokens[2]}"}
        )
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert (
            refused.json()["error"]["type"] == "rate_limit_error"
            and "waiting" in refused.json()["error"]["message"]
        )
    finally:
        running.close()
        if waiting is not None:
            waiting.close()
    _wait_until(lambda: llm.stats().running == 0 and llm.waiting == 0 and llm.stats().kv_blocks_used == 0)
    headers = {"authorization": f"Bearer {tokens[3]}"}
    assert httpx.get(url + "/v1/models", headers=headers).status_code == 200  # burst: one request
    limited = httpx.get(url + "/v1/models", headers=headers)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
