"""The engine port: what a server asks of an LLM engine, and the values that cross it.

An engine owns a model, a KV cache and a scheduler. The caller submits requests (``add_request``) and
turns the crank (``step``: one scheduler iteration, every running request advances by at most one token
or one prefill chunk); each step returns the outputs produced in it, streamed per request. An engine is
*not* thread-safe: one thread (the server's engine loop) calls every method. This module imports no torch,
so the API side and the CLI can build requests and configs without loading a model.

Implementations live in :data:`ENGINES` (name → factory taking an :class:`EngineConfig`):
``"native"`` (paged KV cache, continuous batching, prefix caching; :mod:`skyline.llm.native`) and
``"transformers"`` (transformers' own continuous batching, the reference; :mod:`skyline.llm.reference`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args

from skyline.errors import ConfigError, ConflictError, NotFoundError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENGINES",
    "Engine",
    "EngineConfig",
    "EngineStats",
    "FinishReason",
    "GenerationRequest",
    "Quantization",
    "RequestOutput",
    "SamplingParams",
    "TokenConstraint",
    "check_request",
    "create_engine",
]

FinishReason = Literal["stop", "length", "abort", "error"]
Quantization = Literal["none", "int8", "int4"]
DType = Literal["float32", "bfloat16"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """How one request samples its tokens (OpenAI's parameters plus vLLM's ``min_tokens``/``ignore_eos``).

    ``temperature == 0`` is greedy. ``top_k == 0`` and ``top_p == 1`` switch those filters off. ``seed``
    gives the request its own random generator, so its tokens do not depend on which requests share its
    batch. ``stop`` strings end generation and are not part of the returned text; ``stop_token_ids`` end
    it too (the token is counted, its text is not returned). The model's end-of-sequence token ends a
    request unless ``ignore_eos``; neither EOS nor stop tokens/strings end it before ``min_tokens``.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    min_tokens: int = 0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens is {self.max_tokens}; it must be ≥ 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(
                f"temperature is {self.temperature}; it must be a finite number ≥ 0 (0 = greedy)"
            )
        if not (0 < self.top_p <= 1):
            raise ConfigError(f"top_p is {self.top_p}; it must be in (0, 1]")
        if self.top_k < 0:
            raise ConfigError(f"top_k is {self.top_k}; it must be ≥ 0 (0 switches it off)")
        if self.seed is not None and not (0 <= self.seed < 2**63):
            raise ConfigError(f"seed is {self.seed}; it must be in [0, 2**63)")
        if not (0 <= self.min_tokens <= self.max_tokens):
            raise ConfigError(
                f"min_tokens is {self.min_tokens}; it must be in [0, max_tokens={self.max_tokens}]"
            )
        if any(not s for s in self.stop):
            raise ConfigError(f"stop is {self.stop!r}; stop strings must not be empty")
        if any(t < 0 for t in self.stop_token_ids):
            raise ConfigError(f"stop_token_ids is {self.stop_token_ids!r}; token ids are ≥ 0")

    @property
    def greedy(self) -> bool:
        """True when the request always takes the most likely token."""
        return self.temperature == 0 or self.top_k == 1


class TokenConstraint(Protocol):
    """A per-request grammar (JSON, a JSON schema, ...): which tokens may come next. Stateful.

    The engine calls ``allowed`` before sampling each token and ``advance`` with the token it chose
    (unless that token ends the request by itself: an EOS or stop token). If ``is_complete`` turns true
    after an ``advance``, the request finishes with ``'stop'``. Any exception raised by these methods
    finishes that request with ``'error'`` (never the engine).
    """

    def allowed(self) -> torch.Tensor | None:
        """A bool mask ``[n]`` of the tokens allowed next (None: any). Ids ≥ n (a mask as long as the
        tokenizer, logits wider than it) are disallowed."""

    def advance(self, token_id: int) -> None:
        """Consume the token the engine chose."""

    def is_complete(self) -> bool:
        """True when the grammar has finished (the output is complete and valid)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationRequest:
    """One generation request: tokens in, sampling parameters, scheduling priority (lower runs first;
    first come, first served within a priority), and an optional per-request constraint."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    priority: int = 0
    constraint: TokenConstraint | None = None

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ConfigError("request_id is empty; give every request a unique id")
        if not self.prompt_token_ids:
            raise ConfigError(f"request {self.request_id!r} has an empty prompt; give at least one token")
        if any(t < 0 for t in self.prompt_token_ids):
            raise ConfigError(f"request {self.request_id!r} has a negative token id; token ids are ≥ 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOutput:
    """What one request produced in one step (only requests with news appear in a step's outputs).

    ``text_delta`` is the new text since the last output (incremental detokenization; text that could
    still turn into a stop string is held back until it cannot; stop strings are removed). Token counts
    are totals so far. ``cached_prompt_tokens`` is how many prompt tokens came from the prefix cache.
    ``first_token`` marks the output that carries the request's first generated token (for TTFT).
    """

    request_id: str
    new_token_ids: tuple[int, ...]
    text_delta: str
    finished: bool
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    first_token: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStats:
    """A snapshot of an engine's state and its counters since it started.

    Prefix-cache figures count prompt *tokens*: ``prefix_cache_query_tokens`` is every prompt token
    looked up (each prefill of a request, recomputation after preemption included), and
    ``prefix_cache_hit_tokens`` those found in the cache. ``kv_blocks_used`` counts blocks held by
    requests; cached blocks that no request holds are free (evictable) and not counted.
    """

    running: int
    waiting: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_block_size: int
    prefix_cache_query_tokens: int
    prefix_cache_hit_tokens: int
    preemptions: int
    prompt_tokens_total: int
    generated_tokens_total: int
    requests_finished: int
    requests_aborted: int
    requests_failed: int

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Hit tokens / query tokens (0.0 before the first query)."""
        return (
            self.prefix_cache_hit_tokens / self.prefix_cache_query_tokens
            if self.prefix_cache_query_tokens
            else 0.0
        )

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV blocks held by requests (0..1)."""
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0


class Engine(Protocol):
    """An LLM engine. One thread calls every method (see the module docstring)."""

    tokenizer: Any  # a Hugging Face tokenizer: encode, decode, apply_chat_template, eos_token_id
    model_name: str
    max_model_len: int  # prompt + generated tokens one request may hold
    eos_token_ids: tuple[int, ...]  # tokens that end a request (unless ignore_eos)

    def add_request(self, request: GenerationRequest) -> None:
        """Queue a request. Raises ConfigError for one that can never run (too long, duplicate id, ...)."""

    def step(self) -> list[RequestOutput]:
        """Run one scheduler iteration; return the outputs it produced (possibly none)."""

    def abort(self, request_id: str) -> None:
        """Stop a request now and free its KV blocks; the next ``step`` emits its final ``'abort'``
        output. Unknown or finished ids are ignored (the client may race the finish)."""

    def has_unfinished(self) -> bool:
        """True while any request is waiting or running (or has an output still to emit)."""

    def stats(self) -> EngineStats:
        """The engine's current state and counters."""

    def close(self) -> None:
        """Release what the engine holds (threads, the KV cache); it must not be used afterwards."""


def check_request(
    request: GenerationRequest, *, live: Container[str], max_model_len: int, vocab_size: int
) -> None:
    """The checks every engine makes in ``add_request``: a unique live id, a prompt that fits, known tokens."""
    if request.request_id in live:
        raise ConflictError(f"request id {request.request_id!r} is already running; use a unique id")
    prompt = request.prompt_token_ids
    if len(prompt) >= max_model_len:
        raise ConfigError(
            f"prompt has {len(prompt)} tokens; this engine holds at most {max_model_len} tokens per request "
            "(prompt + output): shorten the prompt"
        )
    if max(prompt) >= vocab_size:
        raise ConfigError(f"prompt token id {max(prompt)} is outside the vocabulary (size {vocab_size})")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How to build an engine.

    ``model`` is a known name (``smollm2-135m``) or a local Hugging Face causal-LM folder. The KV cache
    holds ``kv_blocks`` blocks of ``block_size`` tokens each, shared by all requests.
    ``max_num_batched_tokens`` is the per-step token budget (decode tokens + prefill chunks): it bounds
    how long one step takes, so a long prompt is prefilled in chunks while other streams keep decoding.
    ``threads`` is torch's intra-op thread count (None: leave torch's setting alone).
    """

    model: str = "smollm2-135m"
    quant: Quantization = "none"
    dtype: DType = "float32"
    max_num_seqs: int = 16
    kv_blocks: int = 1024
    block_size: int = 16
    max_num_batched_tokens: int = 512
    max_model_len: int | None = None  # None: the model's own context length
    enable_prefix_caching: bool = True
    threads: int | None = None
    cache_dir: Path | None = None  # converted models; None: $SKYLINE_CACHE or ~/.cache/skyline/llm

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is empty; name a known model (smollm2-135m) or a local model folder")
        if self.quant not in get_args(Quantization):
            raise ConfigError(f"quant is {self.quant!r}; choose one of {', '.join(get_args(Quantization))}")
        if self.dtype not in get_args(DType):
            raise ConfigError(f"dtype is {self.dtype!r}; choose one of {', '.join(get_args(DType))}")
        for name in ("max_num_seqs", "kv_blocks", "block_size", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}; it must be ≥ 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens is {self.max_num_batched_tokens}; it must be ≥ max_num_seqs "
                f"({self.max_num_seqs}) so every running stream can decode in one step"
            )
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ConfigError(f"max_model_len is {self.max_model_len}; it must be ≥ 2")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads is {self.threads}; it must be ≥ 1")


def _lazy(module: str, name: str) -> Callable[[EngineConfig], Engine]:
    """A factory that imports ``module`` (and with it torch and transformers) only when called."""

    def factory(config: EngineConfig) -> Engine:
        engine_class = getattr(importlib.import_module(module), name)
        return cast("Engine", engine_class(config))

    return factory


#: Engine factories by name; each imports its implementation (and torch) only when called.
ENGINES: dict[str, Callable[[EngineConfig], Engine]] = {
    "native": _lazy("skyline.llm.native", "NativeEngine"),
    "transformers": _lazy("skyline.llm.reference", "TransformersEngine"),
}


def create_engine(name: str, config: EngineConfig) -> Engine:
    """Build the engine registered as ``name``."""
    try:
        factory = ENGINES[name]
    except KeyError:
        raise NotFoundError(
            f"engine {name!r} is unknown; choose one of {', '.join(sorted(ENGINES))}"
        ) from None
    return factory(config)
