"""`Policy`: the one interface of every scheduling policy, and `ViewPolicy`, the base they share.

A policy is pure: given the cluster state it returns an `Allocation` (which jobs run, and where); it
never starts or stops anything itself (the `Scheduler` does, through the `Executor` port).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from skyline.core import GPU_MILLI, Allocation, ClusterState, Placement
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Request
from skyline.scheduling.view import Decision, JobView, RoundView


@runtime_checkable
class Policy(Protocol):
    """A scheduling policy. ``oracle`` is True when it is told true job durations (sjf, srtf, ...)."""

    name: str
    oracle: bool

    def allocate(self, state: ClusterState) -> Allocation:
        """Which unfinished jobs of ``state`` run, and where. Must pass ``state.check``.

        A running job left out is preempted; a running job kept should keep its placement.
        """
        ...


class ViewPolicy(ABC):
    """Base of the built-in policies: they decide on a `RoundView` (fast), `allocate` converts."""

    name: str = ""
    oracle: bool = False

    @abstractmethod
    def decide(self, view: RoundView) -> Decision:
        """Decide on plain views: which running jobs to stop and which jobs to start where.

        ``view.packer`` holds the running jobs on entry; on return it must hold the decided state.
        """

    def allocate(self, state: ClusterState) -> Allocation:
        view = view_of(state, oracle=self.oracle)
        decision = self.decide(view)
        stopped = set(decision.stop)
        target = {j.index: j.placing for j in view.jobs if j.placing is not None and j.index not in stopped}
        target.update(decision.start)
        nodes = view.packer.nodes
        placements: dict[str, tuple[Placement, ...]] = {}
        for index, placing in target.items():
            spec = state.jobs[index].spec
            placements[spec.id] = tuple(
                Placement(node_id=nodes[node].id, resources=spec.resources, gpu_indices=devices)
                for node, devices in placing
            )
        return Allocation(placements)

    def __repr__(self) -> str:
        return f"<policy {self.name}>"


def request_of(
    resources_gpu_milli: int, replicas: int, cpu_milli: int, memory_mib: int, gpu_type: str | None
) -> Request:
    """A packer `Request`; ``gpu_type`` may list several allowed models as ``"V100M16|V100M32"``."""
    return Request(
        gpu_milli=resources_gpu_milli,
        replicas=replicas,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        gpu_types=frozenset(gpu_type.split("|")) if gpu_type else frozenset(),
    )


def view_of(state: ClusterState, *, oracle: bool) -> RoundView:
    """A `RoundView` of ``state``: running jobs committed in a fresh packer, jobs in state order."""
    packer = Packer(
        [
            NodeSpec(
                id=n.id,
                gpus=n.capacity.gpu_milli // GPU_MILLI,
                gpu_type=n.capacity.gpu_type,
                cpu_milli=n.capacity.cpu_milli,
                memory_mib=n.capacity.memory_mib,
            )
            for n in state.cluster
        ]
    )
    jobs: list[JobView] = []
    for index, job in enumerate(state.jobs):
        spec = job.spec
        r = spec.resources
        request = request_of(r.gpu_milli, spec.replicas, r.cpu_milli, r.memory_mib, r.gpu_type)
        remaining = None
        if oracle and spec.duration_s is not None:
            gang_gpus = max(request.total_gpu_milli / GPU, 1e-9)
            remaining = max(spec.duration_s - job.attained_gpu_s / gang_gpus, 0.0)
        view = JobView(
            index=index,
            id=spec.id,
            request=request,
            submit_s=spec.submit_time_s,
            attained_gpu_s=job.attained_gpu_s,
            duration_s=spec.duration_s if oracle else None,
            remaining_s=remaining,
            job_type=spec.job_type,
            priority=spec.priority,
            restarts=job.restarts,
            progress_at_s=state.now_s,
        )
        running = state.running.placements.get(spec.id)
        if running:
            replicas: list[tuple[int, tuple[int, ...]]] = []
            for p in running:  # one by one, so that unnamed devices are not claimed twice
                replica = packer.claim(request, packer.index[p.node_id], tuple(p.gpu_indices))
                packer.take(request, (replica,))
                replicas.append(replica)
            view.placing = tuple(replicas)
        jobs.append(view)
    waiting = [j for j in jobs if j.placing is None]
    return RoundView(
        now_s=state.now_s, jobs=jobs, waiting=waiting, packer=packer, throughput=state.throughput
    )
