"""`Scheduler`: ask the policy, then make the world match through the `Executor` port.

One scheduler for both worlds: the live control plane passes a wall clock and a real executor, the
simulator a simulated clock and executor. The scheduler stops preempted jobs first (freeing their
resources), then starts the newly placed ones, and times every decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from skyline.core import Allocation, Clock, ClusterState, Executor, JobSpec, Placement
from skyline.scheduling.packing import Placing
from skyline.scheduling.policy import Policy, ViewPolicy
from skyline.scheduling.view import Decision, RoundView


class Scheduler:
    """Runs one ``policy`` against a ``clock`` and an ``executor``; `step` is one scheduling decision."""

    def __init__(self, policy: Policy, clock: Clock, executor: Executor) -> None:
        self.policy = policy
        self.clock = clock
        self.executor = executor
        self.decision_s: list[float] = []  # wall time of every decision (policy only)
        self.preemptions = 0

    def step(self, state: ClusterState) -> Allocation:
        """Decide on ``state`` and apply the difference: stop the preempted, start the new."""
        started = time.perf_counter()
        allocation = self.policy.allocate(state)
        self.decision_s.append(time.perf_counter() - started)
        state.check(allocation)
        running = state.running.placements
        wanted = allocation.placements
        for job_id, placements in running.items():
            if wanted.get(job_id) != placements:
                self.executor.stop(job_id)
                self.preemptions += 1
        specs = {job.id: job.spec for job in state.jobs}
        for job_id, placements in wanted.items():
            if running.get(job_id) != placements:
                self.executor.start(specs[job_id], placements)
        return allocation

    def step_view(
        self,
        view: RoundView,
        *,
        spec_of: Callable[[int], JobSpec],
        placements_of: Callable[[int, Placing], Sequence[Placement]],
    ) -> Decision:
        """The simulator's fast path: decide on a live `RoundView` and apply the change.

        Only `ViewPolicy` policies (every built-in one) decide on views. ``spec_of(index)`` and
        ``placements_of(index, placing)`` build the core objects the `Executor` port takes.
        """
        if not isinstance(self.policy, ViewPolicy):
            raise TypeError(f"{self.policy!r} decides on ClusterState only; use Scheduler.step")
        started = time.perf_counter()
        decision = self.policy.decide(view)
        self.decision_s.append(time.perf_counter() - started)
        for index in decision.stop:
            self.executor.stop(spec_of(index).id)
            self.preemptions += 1
        for index, placing in decision.start.items():
            self.executor.start(spec_of(index), placements_of(index, placing))
        return decision
