"""The server's core without HTTP: `AsyncEngine` drives the real native engine on its thread and hands each
request's outputs to asyncio; closing a stream aborts; admission is bounded; one bad request or one failed
step never stops the loop; stopping leaves the engine empty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from skyline.errors import ConfigError, OverloadedError
from skyline.llm.async_engine import AsyncEngine, RequestStream, run_to_completion
from skyline.llm.engine import GenerationRequest, RequestOutput, SamplingParams
from tests.llm_fixtures import chat_prompt, llm_engine, make_native_engine, smollm  # noqa: F401

pytestmark = pytest.mark.integration


def _request(engine: Any, rid: str, max_tokens: int = 6, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        request_id=rid,
        prompt_token_ids=chat_prompt(engine.tokenizer, "Tell me about the sea."),
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0, **params),
    )


async def _drain(stream: RequestStream) -> list[RequestOutput]:
    return [output async for output in stream]


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def test_requests_stream_their_outputs_and_closing_aborts(llm_engine: Any) -> None:  # noqa: F811
    finished: list[tuple[str, str]] = []

    async def scenario() -> None:
        llm = AsyncEngine(
            llm_engine, on_finish=lambda s, reason: finished.append((s.request.request_id, reason))
        )
        llm.start()
        try:
            streams = [llm.submit(_request(llm_engine, f"r{i}", max_tokens=4 + i)) for i in range(3)]
            results = await asyncio.gather(*(_drain(s) for s in streams))
            for i, outputs in enumerate(results):
                assert outputs[-1].finished and all(not o.finished for o in outputs[:-1])
                assert outputs[-1].completion_tokens == 4 + i and outputs[0].first_token
                timing = streams[i].timing
                assert timing.first_token_s is not None and timing.first_token_s >= timing.submitted_s
                assert len(timing.token_gaps_s) == len([o for o in outputs if o.new_token_ids]) - 1
            before = llm.stats().generated_tokens_total
            long = llm.submit(_request(llm_engine, "long", max_tokens=500, ignore_eos=True))
            async for output in long:
                if output.completion_tokens >= 2:
                    break  # leaving the loop closes the stream: the request is aborted
            await _until(lambda: llm.stats().running == 0 and llm.stats().kv_blocks_used == 0)
            assert llm.stats().generated_tokens_total - before < 100
        finally:
            await llm.stop()

    asyncio.run(scenario())
    assert sorted(finished) == [("long", "abort"), ("r0", "length"), ("r1", "length"), ("r2", "length")]
    assert not llm_engine.has_unfinished()


def test_admission_is_bounded_and_refusals_stay_with_their_request(llm_engine: Any) -> None:  # noqa: F811
    async def scenario() -> None:
        llm = AsyncEngine(llm_engine, max_waiting=2)
        llm.start()
        try:
            streams = [
                llm.submit(_request(llm_engine, f"q{i}")) for i in range(2)
            ]  # nothing runs yet: both wait
            with pytest.raises(OverloadedError) as refused:
                llm.submit(_request(llm_engine, "q2"))
            assert refused.value.retry_after_s >= 1
            with pytest.raises(ConfigError, match="already in flight"):
                llm.submit(_request(llm_engine, "q0"))
            await asyncio.gather(*(_drain(s) for s in streams))
            too_long = GenerationRequest(request_id="too-long", prompt_token_ids=(1,) * 10_000)
            refused_stream = llm.submit(too_long)
            bad = await _drain(refused_stream)
            assert bad[-1].finish_reason == "error" and isinstance(refused_stream.error, ConfigError)
            ok = await _drain(llm.submit(_request(llm_engine, "after")))
            assert ok[-1].finish_reason == "length"
        finally:
            await llm.stop()

    asyncio.run(scenario())
    assert not llm_engine.has_unfinished()


class _FailingOnce:
    """The real engine, except that its ``fail_at``-th step raises (failure injection)."""

    def __init__(self, engine: Any, fail_at: int) -> None:
        self._engine, self._steps, self._fail_at = engine, 0, fail_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def step(self) -> list[RequestOutput]:
        self._steps += 1
        if self._steps == self._fail_at:
            raise RuntimeError("injected failure")
        outputs: list[RequestOutput] = self._engine.step()
        return outputs


def test_a_failed_step_ends_the_requests_in_flight_and_the_loop_goes_on(
    make_native_engine: Callable[..., Any],  # noqa: F811
) -> None:
    engine = make_native_engine(kv_blocks=64)
    failing = _FailingOnce(engine, fail_at=3)  # warm-up free: step 3 is the first request's

    async def scenario() -> None:
        llm = AsyncEngine(failing)  # type: ignore[arg-type]
        llm.start()
        try:
            doomed = await asyncio.gather(
                *(_drain(llm.submit(_request(engine, f"d{i}", max_tokens=20))) for i in range(2))
            )
            assert all(
                outputs[-1].finish_reason == "error" and "injected" in (outputs[-1].error or "")
                for outputs in doomed
            )
            fine = await _drain(llm.submit(_request(engine, "fine")))
            assert fine[-1].finish_reason == "length"
            await _until(lambda: llm.stats().kv_blocks_used == 0)
            long = llm.submit(_request(engine, "left-running", max_tokens=500, ignore_eos=True))
            async for _ in long:
                break
        finally:
            await llm.stop()  # with a request still in flight

    asyncio.run(scenario())
    assert not engine.has_unfinished() and engine.stats().kv_blocks_used == 0


def test_run_to_completion_drives_the_engine_on_the_callers_thread(llm_engine: Any) -> None:  # noqa: F811
    outputs = list(run_to_completion(llm_engine, _request(llm_engine, "cli", max_tokens=5)))
    assert outputs[-1].finished and outputs[-1].completion_tokens == 5
    text = "".join(o.text_delta for o in outputs)
    assert text == llm_engine.tokenizer.decode(
        [t for o in outputs for t in o.new_token_ids], skip_special_tokens=True
    )
    first = run_to_completion(llm_engine, _request(llm_engine, "abandoned", max_tokens=50))
    next(first)
    first.close()  # the caller stops early: the request is aborted and the engine drained
    assert not llm_engine.has_unfinished() and llm_engine.stats().kv_blocks_used == 0
