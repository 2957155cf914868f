"""The native engine against transformers' ``generate`` on SmolLM2-135M, and its request semantics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from skyline.errors import ConfigError, ConflictError
from skyline.llm.engine import GenerationRequest, SamplingParams
from tests.llm_fixtures import chat_prompt, greedy, make_native_engine, run_to_completion, smollm

pytestmark = pytest.mark.integration
_ = (make_native_engine, smollm)  # fixtures

MAX_NEW = 16
QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea and the wind.",
    "List three prime numbers.",
]


@pytest.fixture(scope="module")
def prompts(smollm: Any) -> list[tuple[int, ...]]:
    chats = [chat_prompt(smollm.tokenizer, q) for q in QUESTIONS]
    raw = tuple(smollm.tokenizer("The quick brown fox")["input_ids"])  # no chat template, 4 tokens
    return [*chats, raw]


@pytest.fixture(scope="module")
def reference(smollm: Any, prompts: list[tuple[int, ...]]) -> list[list[int]]:
    """transformers' greedy ``generate``, one prompt at a time (float32, the same weights)."""
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            out = smollm.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False
            )
            outputs.append(out[0, len(prompt) :].tolist())
    return outputs


def tokens_of(outputs: dict[str, list[Any]], name: str) -> list[int]:
    return [t for out in outputs[name] for t in out.new_token_ids]


def greedy_requests(prompts: list[tuple[int, ...]], tag: str) -> list[GenerationRequest]:
    return [
        GenerationRequest(request_id=f"{tag}{i}", prompt_token_ids=p, params=greedy(MAX_NEW))
        for i, p in enumerate(prompts)
    ]


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="default"),
        pytest.param({"max_num_batched_tokens": 16}, id="chunked-prefill"),
        pytest.param({"kv_blocks": 10, "block_size": 8}, id="preemption"),
    ],
)
def test_greedy_equals_generate_alone_batched_and_from_the_prefix_cache(
    make_native_engine: Callable[..., Any],
    prompts: list[tuple[int, ...]],
    reference: list[list[int]],
    config: dict[str, int],
) -> None:
    engine = make_native_engine(**config)
    if not config:  # one prompt at a time first: the batch below then also hits the prefix cache
        for i, request in enumerate(greedy_requests(prompts, "alone")):
            assert tokens_of(run_to_completion(engine, [request]), f"alone{i}") == reference[i]
    # Batched, mixed lengths. Chunked prefill admits the prompts over several steps, so the later ones
    # find the chat template's system prompt cached; the tiny cache forces preemption and recomputation.
    batched = run_to_completion(engine, greedy_requests(prompts, "batch"))
    for i, expected in enumerate(reference):
        assert tokens_of(batched, f"batch{i}") == expected
    stats = engine.stats()
    assert stats.kv_blocks_used == 0 and stats.running == 0 and stats.waiting == 0
    assert stats.prefix_cache_hit_tokens > 0
    assert max(out[-1].cached_prompt_tokens for out in batched.values()) > 0
    if "kv_blocks" in config:
        assert stats.preemptions > 0


def test_streamed_text_is_the_decoded_tokens(
    make_native_engine: Callable[..., Any], smollm: Any, prompts: list[tuple[int, ...]]
) -> None:
    outputs = run_to_completion(make_native_engine(), greedy_requests(prompts, "t"))
    for i in range(len(prompts)):
        text = "".join(o.text_delta for o in outputs[f"t{i}"])
        assert text == smollm.tokenizer.decode(tokens_of(outputs, f"t{i}"), skip_special_tokens=True)
        assert [o.first_token for o in outputs[f"t{i}"]][:2] == [True, False]
        final = outputs[f"t{i}"][-1]
        assert final.finished and final.completion_tokens == len(tokens_of(outputs, f"t{i}"))


def test_a_seeded_request_samples_the_same_tokens_whatever_its_batch(
    make_native_engine: Callable[..., Any], prompts: list[tuple[int, ...]]
) -> None:
    engine = make_native_engine()
    params = SamplingParams(max_tokens=8, temperature=0.9, top_p=0.95, top_k=50, seed=1234, ignore_eos=True)
    alone = run_to_completion(
        engine, [GenerationRequest(request_id="s", prompt_token_ids=prompts[1], params=params)]
    )
    companions = [
        GenerationRequest(
            request_id=f"c{i}", prompt_token_ids=p, params=SamplingParams(max_tokens=10, temperature=1.2)
        )
        for i, p in enumerate(prompts)
    ]
    seeded = GenerationRequest(request_id="s2", prompt_token_ids=prompts[1], params=params)
    together = run_to_completion(engine, [*companions[:2], seeded, *companions[2:]])
    assert tokens_of(together, "s2") == tokens_of(alone, "s")
    other = SamplingParams(max_tokens=8, temperature=0.9, top_p=0.95, top_k=50, seed=99, ignore_eos=True)
    different = run_to_completion(
        engine, [GenerationRequest(request_id="o", prompt_token_ids=prompts[1], params=other)]
    )
    assert tokens_of(different, "o") != tokens_of(alone, "s")


def test_stop_strings_stop_tokens_min_tokens_and_ignore_eos(
    make_native_engine: Callable[..., Any],
    smollm: Any,
    prompts: list[tuple[int, ...]],
    reference: list[list[int]],
) -> None:
    engine = make_native_engine()
    full_text = smollm.tokenizer.decode(reference[1], skip_special_tokens=True)
    stop = full_text[12:16]
    third = reference[1][2]
    requests = [
        GenerationRequest(
            request_id="stop", prompt_token_ids=prompts[1], params=greedy(MAX_NEW, stop=(stop,))
        ),
        GenerationRequest(
            request_id="tok", prompt_token_ids=prompts[1], params=greedy(MAX_NEW, stop_token_ids=(third,))
        ),
        # "What is the capital of France?" ends with EOS after 8 tokens.
        GenerationRequest(
            request_id="min", prompt_token_ids=prompts[0], params=greedy(MAX_NEW, min_tokens=12)
        ),
        GenerationRequest(
            request_id="eos", prompt_token_ids=prompts[0], params=greedy(MAX_NEW, ignore_eos=True)
        ),
        GenerationRequest(request_id="plain", prompt_token_ids=prompts[0], params=greedy(MAX_NEW)),
    ]
    out = run_to_completion(engine, requests)
    stop_text = "".join(o.text_delta for o in out["stop"])
    assert stop_text == full_text[: full_text.index(stop)]
    assert out["stop"][-1].finish_reason == "stop"
    assert tokens_of(out, "tok") == reference[1][: reference[1].index(third) + 1]
    assert out["tok"][-1].finish_reason == "stop"
    assert len(tokens_of(out, "plain")) < 12 and out["plain"][-1].finish_reason == "stop"
    assert len(tokens_of(out, "min")) >= 12
    assert len(tokens_of(out, "eos")) == MAX_NEW and out["eos"][-1].finish_reason == "length"


def test_abort_frees_blocks_at_once_and_emits_a_final_output(
    make_native_engine: Callable[..., Any], prompts: list[tuple[int, ...]]
) -> None:
    engine = make_native_engine()
    for i, prompt in enumerate(prompts):
        engine.add_request(GenerationRequest(request_id=f"a{i}", prompt_token_ids=prompt, params=greedy(6)))
    engine.step()
    engine.step()
    used = engine.stats().kv_blocks_used
    engine.abort("a1")
    assert engine.stats().kv_blocks_used < used
    outputs = engine.step()
    final = [o for o in outputs if o.request_id == "a1"]
    assert len(final) == 1 and final[0].finished and final[0].finish_reason == "abort"
    engine.abort("a1")  # a second abort, and an unknown id, are ignored
    engine.abort("nobody")
    rest = run_to_completion(engine, [])
    assert set(rest) == {"a0", "a2", "a3"}
    stats = engine.stats()
    assert stats.kv_blocks_used == 0 and stats.requests_aborted == 1


class Exploding:
    """A constraint that fails on its second token."""

    def __init__(self) -> None:
        self.calls = 0

    def allowed(self) -> torch.Tensor | None:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("grammar bug")
        return None

    def advance(self, token_id: int) -> None:
        pass

    def is_complete(self) -> bool:
        return False


class OnlyToken:
    """A constraint allowing one token, complete after three of them."""

    def __init__(self, token: int, vocab: int) -> None:
        self.mask = torch.zeros(vocab, dtype=torch.bool)
        self.mask[token] = True
        self.seen = 0

    def allowed(self) -> torch.Tensor | None:
        return self.mask

    def advance(self, token_id: int) -> None:
        self.seen += 1

    def is_complete(self) -> bool:
        return self.seen == 3


def test_a_failing_constraint_fails_only_its_request(
    make_native_engine: Callable[..., Any],
    smollm: Any,
    prompts: list[tuple[int, ...]],
    reference: list[list[int]],
) -> None:
    engine = make_native_engine()
    token = smollm.tokenizer.encode("x")[0]
    requests = [
        GenerationRequest(
            request_id="bad", prompt_token_ids=prompts[1], params=greedy(8), constraint=Exploding()
        ),
        GenerationRequest(
            request_id="only",
            prompt_token_ids=prompts[1],
            params=greedy(8),
            constraint=OnlyToken(token, len(smollm.tokenizer)),
        ),
        GenerationRequest(request_id="good", prompt_token_ids=prompts[1], params=greedy(MAX_NEW)),
    ]
    out = run_to_completion(engine, requests)
    assert out["bad"][-1].finish_reason == "error" and "grammar bug" in (out["bad"][-1].error or "")
    assert tokens_of(out, "only") == [token] * 3 and out["only"][-1].finish_reason == "stop"
    assert tokens_of(out, "good") == reference[1]
    assert engine.stats().kv_blocks_used == 0 and engine.stats().requests_failed == 1


def test_impossible_requests_are_refused(make_native_engine: Callable[..., Any]) -> None:
    engine = make_native_engine(kv_blocks=4, block_size=8)
    assert engine.max_model_len == 32
    with pytest.raises(ConfigError, match="prompt has 32 tokens"):
        engine.add_request(GenerationRequest(request_id="long", prompt_token_ids=(1,) * 32))
    with pytest.raises(ConfigError, match="vocabulary"):
        engine.add_request(GenerationRequest(request_id="oov", prompt_token_ids=(10**7,)))
    engine.add_request(GenerationRequest(request_id="x", prompt_token_ids=(1,) * 26, params=greedy(40)))
    with pytest.raises(ConflictError):
        engine.add_request(GenerationRequest(request_id="x", prompt_token_ids=(1, 2)))
    out = run_to_completion(engine, [])
    assert out["x"][-1].finish_reason == "length"
    assert out["x"][-1].completion_tokens == 6  # capped by max_model_len: 32 - 26
