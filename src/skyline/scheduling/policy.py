"""`Policy`: the one interface of every scheduling policy, its typed `PolicyOptions`, and `view_of`.

A policy is pure: given a `RoundView` it returns a `Decision` (which jobs to start where, which to
stop); it never starts or stops anything itself (the `Scheduler` does, through the `Executor` port).
``decide`` is the one method both worlds call: the simulator on its live views, the control plane on a
view of its store. ``allocate(ClusterState)`` is the same decision on an immutable snapshot.

Options are typed: each policy class names its options dataclass (``Options``), and a registry entry
is built as ``POLICIES[name](options)``; nothing dispatches on a policy's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from skyline.core import GPU_MILLI, Allocation, ClusterState, JobSpec, Node, Placement
from skyline.errors import ConfigError
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Placing, Request
from skyline.scheduling.view import Decision, JobView, RoundView


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyOptions:
    """The options of a policy that takes none; every policy's options derive from it."""


class Policy(ABC):
    """A scheduling policy.

    ``oracle``: it is told job durations (the truth in a simulation, estimates live). ``preemptive``:
    it may stop running jobs. ``service_levels``: attained GPU-seconds at which a running job's rank may
    change (the simulator decides again when a job crosses one).
    """

    name: str = ""
    oracle: bool = False
    preemptive: bool = False
    Options: ClassVar[type[PolicyOptions]] = PolicyOptions

    def __init__(self, options: PolicyOptions | None = None) -> None:
        if options is None:
            options = self.Options()
        if type(options) is not self.Options:
            raise ConfigError(
                f"policy {self.name} takes {self.Options.__name__}, got {type(options).__name__}"
            )
        self.options = options
        self.service_levels: tuple[float, ...] = ()

    @abstractmethod
    def decide(self, view: RoundView) -> Decision:
        """Which running jobs to stop and which jobs to start where.

        ``view.packer`` holds the running jobs on entry; on return it must hold the decided state. A job
        may be placed only on nodes of its pools (`Packer` strategies never place it elsewhere).
        """

    def allocate(self, state: ClusterState) -> Allocation:
        """The decision on an immutable snapshot: which unfinished jobs run, and where."""
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


def options_for(policy: type[Policy], **values: Any) -> PolicyOptions:
    """``policy.Options(**values)``, refusing a value the policy does not take (by name, with the choices)."""
    known = {f.name for f in fields(policy.Options)}
    unknown = sorted(set(values) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no options"
        raise ConfigError(f"policy {policy.name} does not take {', '.join(unknown)} (it takes {takes})")
    return policy.Options(**values)


def time_scaled(options: PolicyOptions, factor: float) -> PolicyOptions:
    """``options`` with every quantity of service (a field named ``*_gpu_s``) multiplied by ``factor``:
    the same policy on a trace whose times were all multiplied by ``factor``."""
    changes: dict[str, Any] = {}
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name.endswith("_gpu_s") and value is not None:
            changes[f.name] = tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor
    return replace(options, **changes)


def takes_option(policy: type[Policy], option: str) -> bool:
    """Whether ``policy``'s options have a field ``option``."""
    return option in {f.name for f in fields(policy.Options)}


def request_of(
    resources_gpu_milli: int,
    replicas: int,
    cpu_milli: int,
    memory_mib: int,
    gpu_type: str | None,
    tiers: frozenset[str] = frozenset(),
) -> Request:
    """A packer `Request`; ``gpu_type`` may list several allowed models as ``"V100M16|V100M32"``."""
    return Request(
        gpu_milli=resources_gpu_milli,
        replicas=replicas,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        gpu_types=frozenset(gpu_type.split("|")) if gpu_type else frozenset(),
        tiers=tiers,
    )


def packer_for(nodes: Iterable[Node]) -> Packer:
    """An empty packer over ``nodes`` (their capacity, GPU model and tier)."""
    return Packer(
        [
            NodeSpec(
                id=n.id,
                gpus=n.capacity.gpu_milli // GPU_MILLI,
                gpu_type=n.capacity.gpu_type,
                cpu_milli=n.capacity.cpu_milli,
                memory_mib=n.capacity.memory_mib,
                tier=str(n.tier),
            )
            for n in nodes
        ]
    )


def request_for(spec: JobSpec) -> Request:
    """The packer `Request` of a job: per-replica resources, gang size, GPU models, tiers."""
    r = spec.resources
    tiers = frozenset(str(t) for t in spec.tiers)
    return request_of(r.gpu_milli, spec.replicas, r.cpu_milli, r.memory_mib, r.gpu_type, tiers)


def commit_running(packer: Packer, request: Request, placements: Iterable[Placement]) -> Placing:
    """Take a running gang's placements in ``packer``; its `Placing` (unnamed devices get free ones)."""
    replicas: list[tuple[int, tuple[int, ...]]] = []
    for p in placements:  # one by one, so that unnamed devices are not claimed twice
        replica = packer.claim(request, packer.index[p.node_id], tuple(p.gpu_indices))
        packer.take(request, (replica,))
        replicas.append(replica)
    return tuple(replicas)


def view_of(state: ClusterState, *, oracle: bool) -> RoundView:
    """A `RoundView` of ``state``: running jobs committed in a fresh packer, jobs in state order.

    Oracle policies are told ``spec.duration_s`` (the truth in a simulation, the estimate live). A
    pending job no node of the state could hold (its tiers, GPU models or size) is left out, as both
    worlds do: it must not block a queue it can never leave.
    """
    packer = packer_for(state.cluster)
    jobs: list[JobView] = []
    for index, job in enumerate(state.jobs):
        spec = job.spec
        request = request_for(spec)
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
            kind=str(spec.kind),
            group=spec.labels.get("service", ""),
            progress_at_s=state.now_s,
        )
        running = state.running.placements.get(spec.id)
        if running:
            view.placing = commit_running(packer, request, running)
        elif not packer.could_ever_fit(request):
            continue
        jobs.append(view)
    waiting = [j for j in jobs if j.placing is None]
    return RoundView(
        now_s=state.now_s,
        jobs=jobs,
        waiting=waiting,
        packer=packer,
        throughput=state.throughput,
        forecasts=state.forecasts,
    )
