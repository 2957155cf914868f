"""`RankedPolicy`: order the jobs, then place them greedily; the shape of most classic schedulers.

Non-preemptive (fifo, sjf, best-fit, ...): running jobs stay, pending ones are placed in rank order;
without backfill the first job that does not fit blocks the rest (head-of-line, as plain FIFO does).
Preemptive (srtf, tiresias-*): every job is ranked; the top ones that fit in the cluster's GPU count
are chosen (Tiresias' rule), running ones not chosen are preempted, and chosen pending ones are placed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from skyline.scheduling.packing import Packer, Placing, Request
from skyline.scheduling.policy import Policy, PolicyOptions
from skyline.scheduling.view import Decision, JobView, RoundView

Placer = Callable[[Packer, Request], Placing | None]

PLACERS: dict[str, Placer] = {
    "best-fit": Packer.best_fit,
    "spread": Packer.spread,
    "fragmentation-aware": Packer.fragmentation_aware,
}


class RankedPolicy(Policy):
    """Rank by `key` (smallest first), place with ``placement``; see the module docstring."""

    backfill: bool = True
    placement: str = "best-fit"

    def __init__(self, options: PolicyOptions | None = None) -> None:
        super().__init__(options)
        self._place = PLACERS[self.placement]

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        """Rank of a job: smaller runs first. Default: submit order (FIFO)."""
        return (job.submit_s, job.index)

    def decide(self, view: RoundView) -> Decision:
        decision = Decision()
        if not view.waiting:
            return decision
        packer = view.packer
        pending = list(view.waiting)
        if self.preemptive and sum(j.request.total_gpu_milli for j in pending) > packer.free_gpu_milli:
            return self._decide_preemptive(view)
        # Everyone waiting fits by count (or the policy never preempts): running jobs stay put and the
        # waiting ones are placed in rank order, which is what the full preemptive rule gives too.
        if type(self).key is not RankedPolicy.key:  # jobs come in submit order: FIFO needs no sort
            now = view.now_s
            pending.sort(key=lambda j: self.key(j, now))
        stop = not (self.backfill or self.preemptive)
        self._place_in_order(packer, pending, decision, stop_at_first_miss=stop)
        return decision

    def _place_in_order(
        self, packer: Packer, jobs: list[JobView], decision: Decision, *, stop_at_first_miss: bool
    ) -> None:
        place = self._place
        for job in jobs:
            request = job.request
            placing = None
            if request.total_gpu_milli <= packer.free_gpu_milli:
                placing = place(packer, request)
            if placing is None:
                if stop_at_first_miss:
                    return
                continue
            packer.take(request, placing)
            decision.start[job.index] = placing

    def _decide_preemptive(self, view: RoundView) -> Decision:
        packer = view.packer
        now = view.now_s
        ranked = sorted(view.jobs, key=lambda j: self.key(j, now))
        budget = packer.total_gpus * 1000
        chosen: set[int] = set()
        used = 0
        for job in ranked:
            need = job.request.total_gpu_milli
            if used + need <= budget:
                chosen.add(job.index)
                used += need
        decision = Decision()
        preempted = [j for j in ranked if j.placing is not None and j.index not in chosen]
        for job in preempted:
            packer.release(job.request, job.placing)  # type: ignore[arg-type]
        chosen_waiting = [j for j in ranked if j.placing is None and j.index in chosen]
        self._place_in_order(packer, chosen_waiting, decision, stop_at_first_miss=False)
        for job in preempted:  # room left where it ran (placement or fragmentation): it keeps running
            assert job.placing is not None
            if packer.can_take(job.request, job.placing):
                packer.take(job.request, job.placing)
            else:
                decision.stop.append(job.index)
        if self.backfill:  # work-conserving: leftover space goes to the next ranked waiting jobs
            rest = [j for j in ranked if j.placing is None and j.index not in chosen]
            self._place_in_order(packer, rest, decision, stop_at_first_miss=False)
        return decision


class Fifo(RankedPolicy):
    """First come, first served; the head of the queue blocks the rest (no backfill)."""

    name = "fifo"
    backfill = False


class FifoBackfill(RankedPolicy):
    """First come, first served, but a job that fits may jump a blocked head of the queue."""

    name = "fifo-backfill"


class BestFit(RankedPolicy):
    """FIFO order with backfill, each job consolidated on the fullest node(s) that hold it."""

    name = "best-fit"


class Spread(RankedPolicy):
    """FIFO order with backfill, replicas spread over the emptiest nodes (worst-fit)."""

    name = "spread"
    placement = "spread"


class FragmentationAware(RankedPolicy):
    """FIFO order with backfill, each job where it fragments the cluster least (in the spirit of FGD)."""

    name = "fragmentation-aware"
    placement = "fragmentation-aware"

    def decide(self, view: RoundView) -> Decision:
        view.packer.workload = workload_of(view.jobs)
        return super().decide(view)


def workload_of(jobs: list[JobView]) -> list[tuple[int, float]]:
    """The mix of GPU asks (milli per replica → share of jobs) that fragmentation is measured against."""
    counts: dict[int, int] = {}
    for job in jobs:
        if job.request.gpu_milli:
            counts[job.request.gpu_milli] = counts.get(job.request.gpu_milli, 0) + 1
    total = sum(counts.values()) or 1
    return [(milli, n / total) for milli, n in sorted(counts.items())]


class Sjf(RankedPolicy):
    """Shortest job first, non-preemptive, told durations (the truth in a simulation, estimates live;
    a job with no estimate ranks after those with one)."""

    name = "sjf"
    oracle = True

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        return (math.inf if job.duration_s is None else job.duration_s, job.submit_s, job.index)


class Srtf(RankedPolicy):
    """Shortest remaining time first, preemptive, told durations (the oracle reference)."""

    name = "srtf"
    oracle = True
    preemptive = True

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        return (job.remaining_at(now_s), job.submit_s, job.index)


class Srsf(RankedPolicy):
    """Shortest remaining service (GPU-time = remaining time × GPUs) first, preemptive, oracle."""

    name = "srsf"
    oracle = True
    preemptive = True

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        return (job.remaining_at(now_s) * job.gpus, job.submit_s, job.index)
