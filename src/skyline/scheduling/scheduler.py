"""`Scheduler`: ask the policy, then make the world match through the `Executor` port.

One scheduler, one method for both worlds: the live control plane passes a wall clock, a real executor
and a view of its store; the simulator a simulated clock and executor and its live views. `step` times
the decision, refuses any start outside a job's pools or gang size (the job waits; the others go on),
stops the preempted jobs first (freeing their resources), then starts the newly placed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from skyline.core import Clock, Executor, JobSpec, Placement
from skyline.scheduling.packing import Placing
from skyline.scheduling.policy import Policy
from skyline.scheduling.view import Decision, JobView, RoundView


class Scheduler:
    """Runs one ``policy`` against a ``clock`` and an ``executor``; `step` is one scheduling decision."""

    def __init__(self, policy: Policy, clock: Clock, executor: Executor) -> None:
        self.policy = policy
        self.clock = clock
        self.executor = executor
        self.decision_s: list[float] = []  # wall time of every decision (policy only)
        self.preemptions = 0

    def decide(self, view: RoundView) -> Decision:
        """The policy's decision on ``view``, timed, with invalid starts refused (nothing applied yet)."""
        started = time.perf_counter()
        decision = self.policy.decide(view)
        self.decision_s.append(time.perf_counter() - started)
        by_index = {j.index: j for j in view.jobs}
        for index, placing in list(decision.start.items()):
            problem = placement_problem(view, by_index[index], placing)
            if problem is not None:
                view.packer.release(by_index[index].request, placing)
                del decision.start[index]
                decision.refused[index] = problem
        return decision

    def step(self, view: RoundView, spec_of: Callable[[int], JobSpec]) -> Decision:
        """Decide on ``view`` and apply the change: stop the preempted, start the new.

        ``spec_of(index)`` is the `JobSpec` of the job at ``index`` (what the `Executor` port takes).
        """
        decision = self.decide(view)
        self.apply(view, decision, spec_of)
        return decision

    def apply(self, view: RoundView, decision: Decision, spec_of: Callable[[int], JobSpec]) -> None:
        """Make the world match ``decision`` through the executor."""
        for index in decision.stop:
            self.executor.stop(spec_of(index).id)
            self.preemptions += 1
        nodes = view.packer.nodes
        for index, placing in decision.start.items():
            spec = spec_of(index)
            self.executor.start(spec, placements_of(spec, placing, [n.id for n in nodes]))


def placements_of(spec: JobSpec, placing: Placing, node_ids: Sequence[str]) -> tuple[Placement, ...]:
    """The `Placement`s of a gang the packer placed (node indices → node ids)."""
    return tuple(
        Placement(node_id=node_ids[node], resources=spec.resources, gpu_indices=devices)
        for node, devices in placing
    )


def placement_problem(view: RoundView, job: JobView, placing: Placing) -> str | None:
    """Why ``placing`` is not a valid start of ``job`` (a policy bug), or None when it is."""
    if len(placing) != job.request.replicas:
        return f"a gang of {job.request.replicas} was given {len(placing)} replica(s)"
    packer, request = view.packer, job.request
    for node, _ in placing:
        gpu_type, tier = packer.pool_of(node)
        if request.tiers and tier not in request.tiers:
            return f"placed on {tier} node {packer.nodes[node].id}; it may run on {sorted(request.tiers)}"
        if request.gpu_milli and request.gpu_types and gpu_type not in request.gpu_types:
            return f"placed on {gpu_type or 'untyped'} GPUs of {packer.nodes[node].id}; it asks for {sorted(request.gpu_types)}"
    return None
