"""OpenAI request bodies → engine requests, with the real tokenizer and chat template (no generation)."""

from __future__ import annotations

from typing import Any

import pytest

from skyline.errors import ConfigError
from skyline.llm.api_prepare import (
    COMPLETION_DEFAULT_MAX_TOKENS,
    chat_request,
    prepare_chat,
    prepare_completion,
)
from skyline.llm.api_protocol import ChatCompletionRequest, CompletionRequest
from skyline.llm.structured import JsonConstraint
from tests.llm_fixtures import chat_prompt, llm_engine, make_native_engine, smollm  # noqa: F401

pytestmark = pytest.mark.integration


def _chat(engine: Any, **fields: Any) -> Any:
    body = {"model": engine.model_name, "messages": [{"role": "user", "content": "Hello there"}], **fields}
    return prepare_chat(ChatCompletionRequest.model_validate(body), engine)


def test_chat_bodies_become_engine_requests(llm_engine: Any) -> None:  # noqa: F811
    prepared = _chat(llm_engine, n=3, seed=41, temperature=0.5, top_p=0.9, top_k=-1, stop="\n\n", priority=-2,
                     max_completion_tokens=7, max_tokens=99)  # fmt: skip
    assert [r.request_id for r in prepared.requests] == [f"{prepared.response_id}-{i}" for i in range(3)]
    assert prepared.response_id.startswith("chatcmpl-") and prepared.n == 3
    first = prepared.requests[0]
    assert first.prompt_token_ids == chat_prompt(llm_engine.tokenizer, "Hello there")  # the model's template
    assert prepared.prompt_tokens == len(first.prompt_token_ids)
    assert [r.params.seed for r in prepared.requests] == [41, 42, 43]  # the choices differ, reproducibly
    params = first.params
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k, params.stop) == (
        7,
        0.5,
        0.9,
        0,
        ("\n\n",),
    )
    assert first.priority == -2 and first.constraint is None
    default = _chat(llm_engine).requests[0]
    assert default.params.max_tokens == llm_engine.max_model_len - len(default.prompt_token_ids)
    assert default.params.temperature == 1.0 and default.params.seed is None
    developer = _chat(llm_engine, messages=[{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                                            {"role": "user", "content": "Hi"}])  # fmt: skip
    system = _chat(
        llm_engine, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert developer.requests[0].prompt_token_ids == system.requests[0].prompt_token_ids


def test_completion_bodies_take_text_token_ids_and_batches(llm_engine: Any) -> None:  # noqa: F811
    def prepare(**fields: Any) -> Any:
        body = {"model": llm_engine.model_name, **fields}
        return prepare_completion(CompletionRequest.model_validate(body), llm_engine)

    text = prepare(prompt="The sky is")
    assert text.requests[0].params.max_tokens == COMPLETION_DEFAULT_MAX_TOKENS
    ids = list(text.requests[0].prompt_token_ids)
    assert prepare(prompt=ids).requests[0].prompt_token_ids == tuple(ids)
    batch = prepare(prompt=["a", "b c"], n=2, max_tokens=3)
    assert (
        len(batch.requests) == 4 and batch.requests[2].prompt_token_ids != batch.requests[1].prompt_token_ids
    )
    assert batch.prompt_tokens == sum(len(batch.requests[i].prompt_token_ids) for i in (0, 2))
    for bad, message in [({"prompt": [len(llm_engine.tokenizer)]}, "outside the vocabulary"),
                         ({"prompt": ""}, "empty"), ({"prompt": []}, "empty"),
                         ({"prompt": "x", "max_tokens": llm_engine.max_model_len}, "maximum context length"),
                         ({"prompt": "x", "echo": True}, "echo")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            prepare(**bad)


def test_json_requests_get_a_constraint_each(llm_engine: Any) -> None:  # noqa: F811
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    prepared = _chat(llm_engine, n=2, max_tokens=20, response_format=fmt)
    constraints = [r.constraint for r in prepared.requests]
    assert all(isinstance(c, JsonConstraint) for c in constraints) and constraints[0] is not constraints[1]
    with pytest.raises(ConfigError, match="max_tokens"):
        _chat(llm_engine, max_tokens=3, response_format=fmt)  # '{"a":0}' takes 7 tokens at least
    with pytest.raises(ConfigError, match="cut or pad"):
        _chat(llm_engine, response_format={"type": "json_object"}, ignore_eos=True)
    with pytest.raises(ConfigError, match="max_tokens: Input should be greater than or equal to 1"):
        chat_request(llm_engine, "hi", max_tokens=0)
