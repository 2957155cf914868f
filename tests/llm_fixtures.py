"""Shared LLM fixtures: SmolLM2-135M loaded once per test session, engines built from it in under a second.

The GGUF model is converted once into the default cache (``$SKYLINE_CACHE/llm`` or ~/.cache/skyline/llm,
shared with ``skyline demo``); every later session loads the cached safetensors in seconds. Import the
fixtures you use into your test module (``from tests.llm_fixtures import llm_engine, smollm``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skyline.llm.engine import EngineConfig, GenerationRequest, RequestOutput, SamplingParams

__all__ = ["chat_prompt", "greedy", "llm_engine", "make_native_engine", "run_to_completion", "smollm"]


@pytest.fixture(scope="session")
def smollm() -> Any:
    """The SmolLM2-135M-Instruct model (float32, eval) with its tokenizer, loaded once per session."""
    from skyline.llm.loader import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def make_native_engine(smollm: Any) -> Callable[..., Any]:
    """``make_native_engine(**EngineConfig fields)``: a fresh native engine over the session's model."""
    from skyline.llm.native import NativeEngine

    def make(**fields: Any) -> Any:
        fields.setdefault("threads", 1)
        fields.setdefault("kv_blocks", 256)
        fields.setdefault("max_num_seqs", 8)
        return NativeEngine(EngineConfig(**fields), loaded=smollm)

    return make


@pytest.fixture(scope="session")
def llm_engine(make_native_engine: Callable[..., Any]) -> Iterator[Any]:
    """One native engine shared by the session (kv_blocks=256, max_num_seqs=8); tests must drain it."""
    engine = make_native_engine()
    yield engine
    assert not engine.has_unfinished(), "a test left requests in the shared engine"


def chat_prompt(tokenizer: Any, text: str) -> tuple[int, ...]:
    """The token ids of a one-message chat with the generation prompt appended."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
    return tuple(ids["input_ids"] if hasattr(ids, "keys") else ids)


def run_to_completion(engine: Any, requests: list[GenerationRequest]) -> dict[str, list[RequestOutput]]:
    """Add the requests, step until every request in the engine finishes, return the outputs by request."""
    for request in requests:
        engine.add_request(request)
    outputs: dict[str, list[RequestOutput]] = {r.request_id: [] for r in requests}
    for _ in range(100_000):
        if not engine.has_unfinished():
            return outputs
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
    raise AssertionError("the engine did not finish its requests")


def greedy(max_tokens: int, **fields: Any) -> SamplingParams:
    """Greedy sampling parameters."""
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **fields)
