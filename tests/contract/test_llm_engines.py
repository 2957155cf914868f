"""One contract, every engine in ENGINES: finish reasons, max_tokens, stop strings, abort, stats, refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skyline.errors import ConfigError, ConflictError
from skyline.llm.engine import ENGINES, EngineConfig, GenerationRequest
from tests.llm_fixtures import chat_prompt, greedy, make_native_engine, run_to_completion, smollm

pytestmark = pytest.mark.integration
_ = (make_native_engine, smollm)  # fixtures

CONFIG = {"threads": 1, "kv_blocks": 128, "block_size": 16, "max_num_seqs": 4}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, make_native_engine: Callable[..., Any]) -> Iterator[Any]:
    if request.param == "native":
        built = make_native_engine(**CONFIG)  # shares the session's loaded model
    else:
        built = ENGINES[request.param](EngineConfig(**CONFIG))  # type: ignore[arg-type]
    yield built
    built.close()


@pytest.fixture(scope="module")
def question(smollm: Any) -> tuple[int, ...]:
    return chat_prompt(smollm.tokenizer, "What is the capital of France?")  # answer + EOS in 8 tokens


def tokens(outputs: list[Any]) -> list[int]:
    return [t for o in outputs for t in o.new_token_ids]


def test_eos_stops_and_max_tokens_caps_with_the_same_greedy_tokens(
    engine: Any, question: tuple[int, ...]
) -> None:
    out = run_to_completion(
        engine,
        [
            GenerationRequest(request_id="eos", prompt_token_ids=question, params=greedy(12)),
            GenerationRequest(request_id="cap", prompt_token_ids=question, params=greedy(3)),
            GenerationRequest(
                request_id="ign", prompt_token_ids=question, params=greedy(10, ignore_eos=True)
            ),
        ],
    )
    eos = tokens(out["eos"])
    assert out["eos"][-1].finish_reason == "stop" and eos[-1] in engine.eos_token_ids
    assert engine.tokenizer.decode(eos, skip_special_tokens=True) == "The capital of France is Paris."
    assert tokens(out["cap"]) == eos[:3] and out["cap"][-1].finish_reason == "length"
    assert len(tokens(out["ign"])) == 10 and out["ign"][-1].finish_reason == "length"
    for name, outputs in out.items():
        final = outputs[-1]
        assert [o.finished for o in outputs].count(True) == 1, name
        assert final.completion_tokens == len(tokens(outputs))
        assert final.prompt_tokens == len(question)
        assert "".join(o.text_delta for o in outputs) == engine.tokenizer.decode(
            tokens(outputs), skip_special_tokens=True
        )
        assert outputs[0].first_token


def test_a_stop_string_ends_the_text_before_it(engine: Any, question: tuple[int, ...]) -> None:
    out = run_to_completion(
        engine,
        [GenerationRequest(request_id="s", prompt_token_ids=question, params=greedy(12, stop=(" is",)))],
    )
    assert "".join(o.text_delta for o in out["s"]) == "The capital of France"
    assert out["s"][-1].finish_reason == "stop"


def test_abort_ends_a_request_with_one_final_output(engine: Any, question: tuple[int, ...]) -> None:
    engine.add_request(
        GenerationRequest(request_id="a", prompt_token_ids=question, params=greedy(50, ignore_eos=True))
    )
    engine.add_request(GenerationRequest(request_id="b", prompt_token_ids=question, params=greedy(4)))
    engine.abort("a")
    engine.abort("unknown")
    out = run_to_completion(engine, [])
    assert out["a"][-1].finish_reason == "abort" and [o.finished for o in out["a"]].count(True) == 1
    assert out["b"][-1].finish_reason == "length"
    assert not engine.has_unfinished()


def test_stats_count_tokens_and_requests(engine: Any, question: tuple[int, ...]) -> None:
    before = engine.stats()
    out = run_to_completion(
        engine,
        [
            GenerationRequest(request_id=f"n{i}", prompt_token_ids=question, params=greedy(5))
            for i in range(3)
        ],
    )
    after = engine.stats()
    assert after.prompt_tokens_total - before.prompt_tokens_total == 3 * len(question)
    assert after.generated_tokens_total - before.generated_tokens_total == sum(
        len(tokens(o)) for o in out.values()
    )
    assert after.requests_finished - before.requests_finished == 3
    assert after.kv_blocks_total > 0 and after.kv_block_size == 16
    assert after.running == 0 and after.waiting == 0


def test_impossible_requests_are_refused(engine: Any) -> None:
    with pytest.raises(ConfigError, match="prompt has"):
        engine.add_request(GenerationRequest(request_id="long", prompt_token_ids=(1,) * engine.max_model_len))
    engine.add_request(GenerationRequest(request_id="dup", prompt_token_ids=(1, 2), params=greedy(2)))
    with pytest.raises(ConflictError):
        engine.add_request(GenerationRequest(request_id="dup", prompt_token_ids=(1, 2)))
    run_to_completion(engine, [])
