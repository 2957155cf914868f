"""The OpenAI request bodies the LLM server accepts (Pydantic: this is the HTTP boundary).

Fields OpenAI defines and this server honours are typed here; vLLM's extensions (``top_k``,
``min_tokens``, ``ignore_eos``, ``priority``) too. Fields this server cannot honour (``logprobs``,
``tools``, penalties, ``logit_bias``, ``echo``, ``suffix``, ``best_of`` > 1) are accepted only with
their neutral value and otherwise refused with a 400 that names them — never silently ignored. Any
other field is refused, as OpenAI does ("Unrecognized request argument").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import models_json_schema

from skyline.errors import ConfigError

__all__ = [
    "MAX_N",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "GenerationFields",
    "ResponseFormat",
    "StreamOptions",
    "openapi_components",
]

MAX_N = 8  # choices per request
_INT32 = 2**31
_StopText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; content parts are joined in order."""
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class JsonSchemaSpec(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    json_schema: dict[str, Any] | bool = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``response_format`` as `skyline.llm.structured.response_format_grammar` reads it."""
        if self.type == "json_schema" and self.json_schema is None:
            raise ConfigError(
                'response_format json_schema needs "json_schema": {"name": ..., "schema": {...}}'
            )
        spec = (
            None
            if self.json_schema is None
            else {"name": self.json_schema.name, "schema": self.json_schema.json_schema}
        )
        return {"type": self.type, "json_schema": spec}


class GenerationFields(_Strict):
    """What both endpoints share: the model, sampling, streaming, structure and scheduling."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    max_tokens: int | None = Field(None, ge=1, lt=_INT32)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: _StopText | Annotated[list[_StopText], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    response_format: ResponseFormat | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(None, max_length=256)
    # vLLM's extensions
    top_k: int | None = Field(None, ge=-1, lt=_INT32)
    min_tokens: int = Field(0, ge=0, lt=_INT32)
    ignore_eos: bool = False
    priority: int = Field(0, ge=-_INT32, lt=_INT32)

    def refuse_unsupported(self) -> None:
        """`ConfigError` (400) for a field set to something this server would otherwise ignore."""
        if self.presence_penalty or self.frequency_penalty:
            raise ConfigError("presence_penalty and frequency_penalty are not supported; leave them at 0")
        if self.logit_bias:
            raise ConfigError("logit_bias is not supported; leave it out")
        if self.stream_options is not None and not self.stream:
            raise ConfigError("stream_options is only allowed with stream: true")

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(GenerationFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1, lt=_INT32)
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none"] | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs or self.top_logprobs is not None:
            raise ConfigError("logprobs are not supported; leave logprobs and top_logprobs out")
        if self.tools:
            raise ConfigError("tools (function calling) are not supported by this server; leave tools out")

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(GenerationFields):
    """``POST /v1/completions``: one prompt or several (text or token ids)."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(union_mode="left_to_right")
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.echo or self.logprobs is not None or self.suffix is not None:
            raise ConfigError("echo, logprobs and suffix are not supported; leave them out")
        if self.best_of is not None and self.best_of != self.n:
            raise ConfigError(
                f"best_of={self.best_of} is not supported; leave it out (n={self.n} choices are returned)"
            )

    def token_limit(self) -> int | None:
        return self.max_tokens

    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per entry (a list of token ids is one prompt)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise ConfigError("prompt is an empty list; give a string or token ids")
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


def openapi_components() -> dict[str, Any]:
    """JSON schemas of the request bodies under ``#/components/schemas`` (the routes parse bodies
    themselves, so FastAPI cannot document them on its own)."""
    _, top = models_json_schema(
        [(ChatCompletionRequest, "validation"), (CompletionRequest, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top["$defs"]
    return defs
