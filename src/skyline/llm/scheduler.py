"""Iteration-level scheduling: which sequences compute how many tokens in the next step.

Every step has a token budget (``max_num_batched_tokens``). Running sequences that are decoding get
their one token first, so a long prompt never stalls the streams already answering; sequences still in
their prompt then get chunks of what budget is left (chunked prefill); waiting sequences are admitted
last, in priority order (lower value first, first come first served within a priority), while there are
free sequence slots, free KV blocks and budget. A new sequence starts after its longest cached prefix.

When a running sequence needs a block and none is free, the lowest-priority, latest-arrived running
sequence is preempted: its blocks are freed and it waits to be recomputed (its full blocks usually stay in
the prefix cache, so recomputing is cheap). A waiting sequence of strictly higher priority than a running
one may preempt it the same way, so a priority does not wait behind a full batch of lower ones.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from skyline.llm.block_manager import KVCacheManager
from skyline.llm.sequence import Sequence, SequenceStatus

__all__ = ["ScheduledBatch", "Scheduler"]


@dataclass(slots=True)
class ScheduledBatch:
    """One step's plan: (sequence, number of its tokens to compute) and the sequences preempted."""

    scheduled: list[tuple[Sequence, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.scheduled)


@dataclass(slots=True)
class SchedulerCounters:
    preemptions: int = 0
    prefix_query_tokens: int = 0
    prefix_hit_tokens: int = 0


class Scheduler:
    """Waiting queue, running batch and the KV blocks they hold."""

    def __init__(self, kv: KVCacheManager, *, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: list[tuple[tuple[int, int], Sequence]] = []  # a heap by sort key
        self.running: list[Sequence] = []  # sorted by sort key
        self.counters = SchedulerCounters()

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        heapq.heappush(self.waiting, (seq.sort_key, seq))

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out of the queues (finished, aborted, failed) and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            entries = [e for e in self.waiting if e[1] is not seq]
            if len(entries) != len(self.waiting):
                self.waiting = entries
                heapq.heapify(self.waiting)
        self.kv.free(seq.request_id)

    def schedule(self) -> ScheduledBatch:
        """Plan the next step (see the module docstring for the order)."""
        batch = ScheduledBatch()
        budget = self.max_num_batched_tokens
        budget = self._schedule_running(batch, budget, decoding=True)
        budget = self._schedule_running(batch, budget, decoding=False)
        if not batch.preempted:
            self._admit_waiting(batch, budget)
        return batch

    def _schedule_running(self, batch: ScheduledBatch, budget: int, *, decoding: bool) -> int:
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            if (seq.num_uncomputed == 1) != decoding:
                i += 1
                continue
            n = min(seq.num_uncomputed, budget)
            while not self.kv.allocate(seq.request_id, seq.num_computed + n):
                victim = self.running[-1]
                budget += self._preempt(victim, batch)
                if victim is seq:
                    break
            else:
                batch.scheduled.append((seq, n))
                budget -= n
                i += 1
        return budget

    def _admit_waiting(self, batch: ScheduledBatch, budget: int) -> None:
        while self.waiting and budget > 0:
            seq = self.waiting[0][1]
            if len(self.running) >= self.max_num_seqs:
                if self._preempt_lower_priority(seq, batch):
                    budget = self.max_num_batched_tokens - batch.num_tokens
                    continue
                return
            hit = self.kv.find_cached_prefix(seq.token_ids)
            num_cached = len(hit[0]) * self.kv.block_size
            n = min(len(seq.token_ids) - num_cached, budget)
            if not self.kv.allocate(seq.request_id, num_cached + n, hit):
                if self._preempt_lower_priority(seq, batch):
                    budget = self.max_num_batched_tokens - batch.num_tokens
                    continue
                return
            heapq.heappop(self.waiting)
            self.counters.prefix_query_tokens += len(seq.token_ids)
            self.counters.prefix_hit_tokens += num_cached
            if seq.num_generated == 0:
                seq.num_cached_prompt = num_cached
            seq.num_computed = num_cached
            seq.status = SequenceStatus.RUNNING
            bisect.insort(self.running, seq, key=lambda s: s.sort_key)
            batch.scheduled.append((seq, n))
            budget -= n

    def _preempt_lower_priority(self, seq: Sequence, batch: ScheduledBatch) -> bool:
        """Preempt the last running sequence if its priority is strictly lower than ``seq``'s."""
        if not self.running or self.running[-1].priority <= seq.priority:
            return False
        self._preempt(self.running[-1], batch)
        return True

    def _preempt(self, victim: Sequence, batch: ScheduledBatch) -> int:
        """Free the victim's blocks and send it back to wait; return the budget it had been given."""
        self.running.remove(victim)
        returned = sum(n for s, n in batch.scheduled if s is victim)
        batch.scheduled = [(s, n) for s, n in batch.scheduled if s is not victim]
        batch.preempted.append(victim)
        self.kv.free(victim.request_id)
        victim.num_computed = 0
        self.counters.preemptions += 1
        self.add(victim)
        return returned
