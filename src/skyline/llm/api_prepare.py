"""OpenAI request bodies turned into engine requests: prompts, sampling parameters, JSON constraints.

Everything that can be wrong with a request is found here, before the engine sees it, and raised as a
`ConfigError` (HTTP 400): a prompt longer than the context, a ``max_tokens`` that does not fit beside it,
token ids outside the vocabulary, an unsupported JSON schema, a combination that cannot be honoured.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from skyline.errors import ConfigError
from skyline.llm.api_protocol import ChatCompletionRequest, CompletionRequest, GenerationFields
from skyline.llm.engine import Engine, GenerationRequest, SamplingParams
from skyline.llm.structured import json_constraint, response_format_grammar

__all__ = ["COMPLETION_DEFAULT_MAX_TOKENS", "Prepared", "chat_request", "prepare_chat", "prepare_completion"]

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's (and vLLM's) default for the legacy completions endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """One API call as engine requests: ``n`` per prompt, choice ``i`` is ``requests[i]``."""

    kind: Literal["chat", "completion"]
    response_id: str
    created: int  # unix seconds
    model: str
    prompt_tokens: int  # over the prompts (the ``n`` choices of a prompt share it)
    n: int  # choices per prompt
    requests: tuple[GenerationRequest, ...]
    stream: bool
    include_usage: bool


def _encode(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    # The Rust tokenizer directly: the Python wrapper toggles truncation state on every call, which
    # races with the engine thread's decoding ("Already borrowed").
    ids: list[int] = tokenizer.backend_tokenizer.encode(text, add_special_tokens=special).ids
    return ids


def _chat_prompt(tokenizer: Any, body: ChatCompletionRequest) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("this model has no chat template; use POST /v1/completions with a plain prompt")
    # OpenAI's "developer" role is the newer name of "system"; templates know only the latter.
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a template that raises (e.g. on role order) rejects these messages
        raise ConfigError(f"the model's chat template rejects these messages: {exc}") from None
    return _encode(tokenizer, str(text), special=False)


def _check_ids(ids: list[int], vocab_size: int) -> list[int]:
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ConfigError(
            f"prompt token id {bad} is outside the vocabulary (0..{vocab_size - 1})",
        )
    return ids


def _max_tokens(asked: int | None, default: int | None, prompt_len: int, max_model_len: int) -> int:
    room = max_model_len - prompt_len
    if room < 1:
        raise ConfigError(
            f"this model's maximum context length is {max_model_len} tokens, and the prompt has "
            f"{prompt_len}; shorten the prompt"
        )
    wanted = asked if asked is not None else default
    if wanted is None:
        return room
    if wanted > room:
        raise ConfigError(
            f"this model's maximum context length is {max_model_len} tokens; the prompt has {prompt_len} "
            f"and {wanted} more were asked for; lower max_tokens to at most {room}"
        )
    return wanted


def _params(body: GenerationFields, max_tokens: int, choice: int) -> SamplingParams:
    seed = None if body.seed is None else (body.seed + choice) % 2**63  # n choices differ, reproducibly
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=0 if body.top_k is None or body.top_k < 0 else body.top_k,
        seed=seed,
        stop=body.stop_strings(),
        min_tokens=min(body.min_tokens, max_tokens),
        ignore_eos=body.ignore_eos,
    )


def _grammar(body: GenerationFields) -> Any:
    if body.response_format is None:
        return None
    grammar = response_format_grammar(body.response_format.as_dict())
    if grammar is not None and (body.stop is not None or body.min_tokens or body.ignore_eos):
        raise ConfigError(
            "response_format with stop, min_tokens or ignore_eos could cut or pad the JSON; drop those fields"
        )
    return grammar


def _prepare(
    kind: Literal["chat", "completion"],
    body: GenerationFields,
    engine: Engine,
    prompts: list[list[int]],
    max_tokens: tuple[int | None, int | None],
) -> Prepared:
    body.refuse_unsupported()
    grammar = _grammar(body)
    response_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
    requests = []
    for p, prompt in enumerate(prompts):
        limit = _max_tokens(*max_tokens, len(prompt), engine.max_model_len)
        for c in range(body.n):
            constraint = None
            if grammar is not None:
                constraint = json_constraint(
                    engine.tokenizer, grammar, max_tokens=limit, eos_ids=engine.eos_token_ids
                )
            requests.append(
                GenerationRequest(
                    request_id=f"{response_id}-{p * body.n + c}",
                    prompt_token_ids=tuple(prompt),
                    params=_params(body, limit, p * body.n + c),
                    priority=body.priority,
                    constraint=constraint,
                )
            )
    return Prepared(
        kind=kind,
        response_id=response_id,
        created=int(time.time()),
        model=body.model,
        prompt_tokens=sum(len(p) for p in prompts),
        n=body.n,
        requests=tuple(requests),
        stream=body.stream,
        include_usage=body.stream_options is not None and body.stream_options.include_usage,
    )


def prepare_chat(body: ChatCompletionRequest, engine: Engine) -> Prepared:
    """The engine requests of a chat completion: the messages through the model's chat template."""
    prompt = _chat_prompt(engine.tokenizer, body)
    return _prepare("chat", body, engine, [prompt], (body.token_limit(), None))


def prepare_completion(body: CompletionRequest, engine: Engine) -> Prepared:
    """The engine requests of a (legacy) completion: each prompt as text or as token ids."""
    vocab_size = len(engine.tokenizer)
    prompts = [
        _check_ids(p, vocab_size) if isinstance(p, list) else _encode(engine.tokenizer, p, special=True)
        for p in body.prompts()
    ]
    if any(not p for p in prompts):
        raise ConfigError("a prompt is empty; give at least one token of text")
    if len(prompts) * body.n > 64:
        raise ConfigError(f"{len(prompts)} prompts × n={body.n} is over 64 choices; send fewer at once")
    return _prepare("completion", body, engine, prompts, (body.token_limit(), COMPLETION_DEFAULT_MAX_TOKENS))


def chat_request(engine: Engine, prompt: str, **fields: Any) -> GenerationRequest:
    """One user message as a chat request to ``engine`` (``fields``: the API's, e.g. ``max_tokens``), checked
    as the server checks it (`ConfigError`): what ``skyline llm generate`` runs without a server."""
    body = {"model": engine.model_name, "messages": [{"role": "user", "content": prompt}], **fields}
    try:
        parsed = ChatCompletionRequest.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return prepare_chat(parsed, engine).requests[0]
