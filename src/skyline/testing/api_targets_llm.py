"""The OpenAI-compatible LLM server (`skyline.llm`) as a security target: `skyline llm serve`'s own runner
with a token file and a per-token rate limit, over a small random-weight Llama.

Why not SmolLM2 itself: what is checked here is the HTTP surface (who may call what, which bodies are
refused, that nothing answers 5xx), and fuzzed requests ask for up to the context's length of tokens; a
2-layer model answers them in milliseconds where the real one takes seconds. It is still the real native
engine, scheduler, sampler and JSON constraints over SmolLM2's tokenizer and chat template.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skyline.testing.api_target import (
    ApiTarget,
    RateLimit,
    Rule,
    TlsPair,
    role_tokens,
)

__all__ = [
    "LLM_RULES",
    "OPENAI_BODIES",
    "TINY_NAME",
    "llm_target",
    "tiny_llm",
    "tiny_llm_server",
    "with_openai_bodies",
]

LLM_RULES: dict[str, Rule | None] = {
    "GET /health": None,
    "GET /health/ready": None,
    "POST /v1/chat/completions": Rule("invoke", "models"),
    "POST /v1/completions": Rule("invoke", "models"),
    "GET /v1/models": Rule("read", "models"),
    "GET /v1/models/{model}": Rule("read", "models"),
    "GET /metrics": Rule("read", "metrics"),
}
TINY_NAME = "tiny-llm"  # the name the server answers to (its folder's)
RATE_PER_S = 20.0  # per token: generous for an LLM, low enough that a burst test trips it at once
_TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


def tiny_llm(folder: Path) -> Path:
    """A random-weight 2-layer Llama with SmolLM2's tokenizer and chat template, saved as a Hugging Face
    folder (served under the folder's name). SmolLM2 is converted into the cache once if it is not there."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from skyline.llm.loader import resolve_model_dir

    if (folder / "config.json").is_file():
        return folder
    _, source = resolve_model_dir("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), **_TINY)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def tiny_llm_server(
    folder: Path,
    *,
    tokens: Path | None = None,
    tls: TlsPair | None = None,
    rate_limit_per_s: float | None = None,
) -> Iterator[Any]:
    """`skyline llm serve`'s runner over `tiny_llm` on a free loopback port (no ``tokens``: open, as the
    edge agent runs its own); yields the running `BackgroundServer`."""
    from skyline.llm.engine import EngineConfig
    from skyline.llm.server import LLMServerConfig, running_server

    model = tiny_llm(folder / TINY_NAME)
    config = LLMServerConfig(
        engine=EngineConfig(model=str(model), threads=1, kv_blocks=128, max_num_seqs=8),
        port=0, tokens=tokens, tls=tls, rate_limit_per_s=rate_limit_per_s,
    )  # fmt: skip
    with running_server(config) as server:
        yield server


def with_openai_bodies(document: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """``document`` with the OpenAI request bodies (`skyline.llm.api_protocol`) declared on ``paths``
    ({"/v1/completions": "CompletionRequest", ...}): routes that parse their bodies themselves declare none."""
    from skyline.llm.api_protocol import openapi_components

    document.setdefault("components", {}).setdefault("schemas", {}).update(openapi_components())
    for path, schema in paths.items():
        ref = {"$ref": f"#/components/schemas/{schema}"}
        document["paths"][path]["post"]["requestBody"] = {"content": {"application/json": {"schema": ref}}}
    return document


OPENAI_BODIES = {"/v1/chat/completions": "ChatCompletionRequest", "/v1/completions": "CompletionRequest"}


@contextmanager
def llm_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """`skyline llm serve` (its `running_server`) with tokens and a rate limit of 20 requests/s per token."""
    from skyline.llm.api import DEFAULT_MAX_BODY_BYTES
    from skyline.security.tokens import TokenAuthority

    tokens = folder / "llm-tokens.json"
    issued = role_tokens(TokenAuthority(tokens))
    with tiny_llm_server(folder, tokens=tokens, tls=tls, rate_limit_per_s=RATE_PER_S) as server:
        yield ApiTarget(
            name="llm",
            url=server.url,
            tokens=issued,
            rules=LLM_RULES,
            path_values={"model": TINY_NAME},
            body_values={"model": TINY_NAME},
            body_limit_bytes=DEFAULT_MAX_BODY_BYTES,
            rate_limit=RateLimit("GET /v1/models", RATE_PER_S, round(2 * RATE_PER_S)),
        )
