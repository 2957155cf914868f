"""The scheduler without a model: budgets, chunked prefill, priorities, preemption."""

from __future__ import annotations

import pytest

from skyline.llm.block_manager import KVCacheManager
from skyline.llm.engine import GenerationRequest
from skyline.llm.scheduler import ScheduledBatch, Scheduler
from skyline.llm.sequence import Sequence, SequenceStatus

pytestmark = pytest.mark.unit


def make(num_blocks: int = 64, block_size: int = 4, seqs: int = 4, budget: int = 16) -> Scheduler:
    kv = KVCacheManager(num_blocks, block_size)
    return Scheduler(kv, max_num_seqs=seqs, max_num_batched_tokens=budget)


def seq(name: str, prompt_len: int, arrival: int, priority: int = 0, first_token: int = 0) -> Sequence:
    prompt = tuple(range(first_token, first_token + prompt_len))
    request = GenerationRequest(request_id=name, prompt_token_ids=prompt, priority=priority)
    return Sequence(request=request, arrival=arrival)


def advance(scheduler: Scheduler, batch: ScheduledBatch) -> None:
    """What the engine does after the model ran: tokens computed, full blocks cached, one token sampled."""
    for s, n in batch.scheduled:
        s.num_computed += n
        scheduler.kv.cache_full_blocks(s.request_id, s.token_ids, s.num_computed)
        if s.num_computed == len(s.token_ids):
            s.token_ids.append(7)


def plan(batch: ScheduledBatch) -> dict[str, int]:
    return {s.request_id: n for s, n in batch.scheduled}


def test_a_long_prompt_is_chunked_and_never_stalls_decoding_streams() -> None:
    scheduler = make(budget=8)
    a = seq("a", 3, 0)
    scheduler.add(a)
    advance(scheduler, scheduler.schedule())  # a: prefill 3, now decoding
    long = seq("long", 20, 1, first_token=100)
    scheduler.add(long)
    steps = []
    while long.num_computed < 20:
        batch = scheduler.schedule()
        steps.append(plan(batch))
        advance(scheduler, batch)
    assert all(step["a"] == 1 for step in steps)  # the decoding stream advanced every step
    assert [step["long"] for step in steps] == [7, 7, 6]  # the rest of the 8-token budget, in chunks
    assert all(sum(step.values()) <= 8 for step in steps)


def test_lower_priority_value_first_and_fifo_within_a_priority() -> None:
    scheduler = make(seqs=2)
    for i, (name, priority) in enumerate([("late-low", 5), ("first", 0), ("second", 0), ("urgent", -1)]):
        scheduler.add(seq(name, 2, i, priority, first_token=10 * i))
    assert set(plan(scheduler.schedule())) == {"urgent", "first"}


def test_max_num_seqs_bounds_the_running_batch() -> None:
    scheduler = make(seqs=2)
    for i in range(3):
        scheduler.add(seq(f"s{i}", 2, i, first_token=10 * i))
    batch = scheduler.schedule()
    assert len(batch.scheduled) == 2
    assert len(scheduler.waiting) == 1


def test_blocks_running_out_preempt_the_lowest_priority_latest_sequence() -> None:
    scheduler = make(num_blocks=4, block_size=4, seqs=4, budget=16)
    old = seq("old", 4, 0, first_token=0)
    new = seq("new", 4, 1, first_token=50)
    scheduler.add(old)
    scheduler.add(new)
    advance(scheduler, scheduler.schedule())  # both hold one full block and sampled a token
    preempted = []
    for _ in range(8):
        batch = scheduler.schedule()
        preempted += [s.request_id for s in batch.preempted]
        advance(scheduler, batch)
    assert preempted and set(preempted) == {"new"}
    assert new.status is SequenceStatus.WAITING and new.num_computed == 0
    assert len(old.token_ids) > len(new.token_ids)
    held = sum(len(scheduler.kv.block_table(s)) for s in ("old", "new"))
    assert held == scheduler.kv.num_used


def test_a_preempted_sequence_resumes_from_its_cached_blocks() -> None:
    scheduler = make(num_blocks=8, block_size=4, seqs=4, budget=32)
    a = seq("a", 9, 0)
    scheduler.add(a)
    advance(scheduler, scheduler.schedule())
    batch = ScheduledBatch()
    scheduler._preempt(a, batch)
    assert scheduler.kv.num_used == 0
    resumed = scheduler.schedule()
    assert plan(resumed) == {"a": 2}  # 10 tokens, 8 of them found in the prefix cache
    assert scheduler.counters.prefix_hit_tokens == 8


def test_a_higher_priority_arrival_preempts_a_lower_running_sequence() -> None:
    scheduler = make(seqs=1)
    low = seq("low", 2, 0, priority=3)
    scheduler.add(low)
    advance(scheduler, scheduler.schedule())
    high = seq("high", 2, 1, priority=0, first_token=40)
    scheduler.add(high)
    batch = scheduler.schedule()
    assert plan(batch) == {"high": 2}
    assert batch.preempted == [low]
    # Same priority: no preemption, the newcomer waits.
    same = seq("same", 2, 2, priority=0, first_token=80)
    scheduler.add(same)
    advance(scheduler, batch)
    assert "same" not in plan(scheduler.schedule())


def test_remove_frees_blocks_of_running_and_waiting_sequences() -> None:
    scheduler = make(seqs=1)
    running, waiting = seq("r", 5, 0), seq("w", 5, 1, first_token=9)
    scheduler.add(running)
    scheduler.add(waiting)
    scheduler.schedule()
    scheduler.remove(running)
    scheduler.remove(waiting)
    assert scheduler.kv.num_used == 0
    assert not scheduler.running and not scheduler.waiting
