"""The dynamic batcher without HTTP: batches form, sizes hold, timeouts, cancellation, overflow, draining."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError, OverloadedError, UnavailableError
from skyline.serving.batching import BatchingConfig, BatchStats, DynamicBatcher

pytestmark = pytest.mark.unit

Arrays = dict[str, np.ndarray[Any, Any]]


class Doubler:
    """compute(x) = 2x, recording every batch's row count; can be held (blocked) to build queues."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.seen: list[float] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs: Arrays) -> Arrays:
        self.entered.set()
        assert self.gate.wait(10)
        self.batches.append(int(inputs["x"].shape[0]))
        self.seen.extend(inputs["x"][:, 0].tolist())
        return {"y": inputs["x"] * 2}


def rows(value: float, n: int = 1) -> Arrays:
    return {"x": np.full((n, 3), value, dtype=np.float32)}


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


async def started(compute: Doubler, **config: Any) -> DynamicBatcher:
    batcher = DynamicBatcher(compute, BatchingConfig(**config), name="t")
    batcher.start()
    return batcher


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_concurrent_requests_form_one_batch_and_each_gets_its_own_rows() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=8)
        answers = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(5)))
        assert compute.batches == [5]
        assert [float(a["y"][0, 0]) for a in answers] == [0.0, 2.0, 4.0, 6.0, 8.0]
        await batcher.close()

    run(body)


def test_max_batch_size_splits_the_queue_and_keeps_order() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=4)
        answers = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(10)))
        assert compute.batches == [4, 4, 2]
        assert compute.seen == [float(i) for i in range(10)]
        assert all(float(a["y"][0, 0]) == 2 * i for i, a in enumerate(answers))
        await batcher.close()

    run(body)


def test_a_lone_request_is_not_held_for_the_window() -> None:
    # A one-minute window: if the lone request waited for it, the 5 s timeout would fire instead.
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_queue_delay_ms=60_000, max_batch_size=8)
        answer = await batcher.submit(rows(3), timeout_s=5)
        assert float(answer["y"][0, 0]) == 6.0 and compute.batches == [1]
        await batcher.close()

    run(body)


def test_without_adaptation_the_window_collects_a_late_request() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_queue_delay_ms=60_000, max_batch_size=2, adaptive=False)
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)  # the worker holds the first request, waiting for a second
        assert compute.batches == []
        second = await batcher.submit(rows(2))
        assert float((await first)["y"][0, 0]) == 2.0 and float(second["y"][0, 0]) == 4.0
        assert compute.batches == [2]  # full batch dispatched at once, not after the window
        await batcher.close()

    run(body)


def test_a_request_that_times_out_in_the_queue_is_answered_once_and_never_computed() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=1)
        compute.gate.clear()
        busy = asyncio.create_task(batcher.submit(rows(1)))
        await until(compute.entered.is_set)
        with pytest.raises(UnavailableError, match="did not answer within"):
            await batcher.submit(rows(7), timeout_s=0.05)
        compute.gate.set()
        assert float((await busy)["y"][0, 0]) == 2.0
        await batcher.close()
        assert compute.seen == [1.0] and batcher.in_flight == 0

    run(body)


def test_a_cancelled_request_is_dropped_from_its_batch() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=4)
        compute.gate.clear()
        busy = asyncio.create_task(batcher.submit(rows(1)))
        await until(compute.entered.is_set)
        gone = asyncio.create_task(batcher.submit(rows(5)))
        kept = asyncio.create_task(batcher.submit(rows(6)))
        await asyncio.sleep(0.01)
        gone.cancel()
        compute.gate.set()
        await busy
        assert float((await kept)["y"][0, 0]) == 12.0
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert compute.seen == [1.0, 6.0]
        await batcher.close()

    run(body)


def test_a_full_queue_refuses_with_overloaded_and_a_retry_after() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=1, max_queue_size=2)
        compute.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(1)))]
        await until(compute.entered.is_set)
        tasks += [asyncio.create_task(batcher.submit(rows(i))) for i in (2, 3)]
        await until(lambda: batcher.queue_depth == 2)
        with pytest.raises(OverloadedError) as refused:
            await batcher.submit(rows(4))
        assert refused.value.retry_after_s >= 1 and refused.value.http_status == 429
        compute.gate.set()
        assert len(await asyncio.gather(*tasks)) == 3
        await batcher.close()

    run(body)


def test_a_failing_batch_fails_every_request_in_it_and_the_worker_survives() -> None:
    calls: list[int] = []

    def flaky(inputs: Arrays) -> Arrays:
        calls.append(len(inputs["x"]))
        if len(calls) == 1:
            raise ValueError("boom")
        return {"y": inputs["x"]}

    async def body() -> None:
        batcher = DynamicBatcher(flaky, BatchingConfig(max_batch_size=8))
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        assert float((await batcher.submit(rows(9)))["y"][0, 0]) == 9.0
        await batcher.close()

    run(body)


def test_close_drains_queued_requests_then_refuses_new_ones() -> None:
    compute = Doubler()
    stats: list[BatchStats] = []

    async def body() -> None:
        batcher = DynamicBatcher(compute, BatchingConfig(max_batch_size=2), on_batch=stats.append)
        batcher.start()
        compute.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(i))) for i in range(5)]
        await until(compute.entered.is_set)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(UnavailableError, match="unloading"):
            await batcher.submit(rows(9))
        compute.gate.set()
        await closing
        assert [float(t.result()["y"][0, 0]) for t in tasks] == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert sum(s.rows for s in stats) == 5 and all(len(s.queue_s) == s.requests for s in stats)

    run(body)


def test_requests_larger_than_the_batch_or_without_rows_are_refused() -> None:
    async def body() -> None:
        batcher = await started(Doubler(), max_batch_size=2)
        with pytest.raises(ConfigError, match="at most 2"):
            await batcher.submit(rows(1, n=3))
        with pytest.raises(ConfigError, match="batch dimension"):
            await batcher.submit({"x": np.zeros((0, 3), np.float32)})
        await batcher.close()

    run(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch_size", 0), ("max_queue_delay_ms", -1), ("instances", 0), ("timeout_s", 0)],
)
def test_batching_config_rejects_nonsense(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        BatchingConfig(**{field: value})


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=20),
    max_batch=st.integers(4, 9),
    instances=st.integers(1, 3),
)
def test_every_request_gets_exactly_its_rows_and_batches_never_overflow(
    sizes: list[int], max_batch: int, instances: int
) -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=max_batch, instances=instances)
        inputs = [
            {"x": np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 100 * i} for i, n in enumerate(sizes)
        ]
        answers = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        for x, answer in zip(inputs, answers, strict=True):
            np.testing.assert_array_equal(answer["y"], x["x"] * 2)
        assert max(compute.batches) <= max_batch and sum(compute.batches) == sum(sizes)
        await batcher.close()
        assert batcher.in_flight == 0

    run(body)


def test_closed_loop_clients_are_waited_for_instead_of_splitting_into_half_batches() -> None:
    compute = Doubler()

    async def client(batcher: DynamicBatcher, index: int) -> None:
        for _ in range(4):
            await batcher.submit(rows(index), timeout_s=20)

    async def body() -> None:
        batcher = await started(compute, max_batch_size=8, max_queue_delay_ms=5_000)
        await asyncio.gather(*(client(batcher, i) for i in range(8)))
        assert compute.batches == [8, 8, 8, 8]
        await batcher.close()

    run(body)


def test_a_lone_sequential_client_is_never_held() -> None:
    compute = Doubler()

    async def body() -> None:
        batcher = await started(compute, max_batch_size=8, max_queue_delay_ms=60_000)
        for i in range(5):
            assert float((await batcher.submit(rows(i), timeout_s=5))["y"][0, 0]) == 2 * i
        assert compute.batches == [1] * 5
        await batcher.close()

    run(body)
