"""`ClusterState`: the snapshot a policy decides on. Everything a policy may know is in here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skyline.core.allocation import Allocation
from skyline.core.cluster import Cluster
from skyline.core.forecast import DemandForecast
from skyline.core.job import Job, JobStatus
from skyline.core.resources import Resources
from skyline.errors import CapacityError, ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    """The cluster at ``now_s``: its nodes, the unfinished jobs and where the running ones are.

    Optional knowledge, for the policies that use it: ``forecasts`` by series name, and
    ``throughput[job_type][gpu_type]``, a job type's speed on a GPU model relative to its reference.
    """

    now_s: float
    cluster: Cluster
    jobs: tuple[Job, ...] = ()
    running: Allocation = field(default_factory=Allocation)
    forecasts: Mapping[str, DemandForecast] = field(default_factory=dict, hash=False)
    throughput: Mapping[str, Mapping[str, float]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        ids = [j.id for j in self.jobs]
        if len(ids) != len(set(ids)):
            raise ConfigError("ClusterState.jobs has duplicate job ids")
        for job in self.jobs:
            if job.status.is_finished():
                raise ConfigError(f"job {job.id} is {job.status}: a state holds unfinished jobs only")
        known = set(ids)
        for job_id in self.running:
            if job_id not in known:
                raise ConfigError(f"running allocation names job {job_id}, which the state does not hold")
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "forecasts", MappingProxyType(dict(self.forecasts)))
        object.__setattr__(self, "throughput", MappingProxyType(dict(self.throughput)))

    def pending(self) -> tuple[Job, ...]:
        """Jobs waiting for resources, in the order given (submit order, by convention)."""
        return tuple(j for j in self.jobs if j.id not in self.running)

    def active(self) -> tuple[Job, ...]:
        """Jobs holding resources now."""
        return tuple(j for j in self.jobs if j.id in self.running)

    def job(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise ConfigError(f"no job {job_id!r} in this state")

    def free_by_node(self) -> dict[str, Resources]:
        """Capacity left on each node after the running allocation."""
        used = self.running.used_by_node()
        return {n.id: n.capacity - used.get(n.id, Resources()) for n in self.cluster}

    def check(self, allocation: Allocation) -> None:
        """Raise unless ``allocation`` is feasible in this state.

        Feasible: every job is known and unfinished, every gang is whole, every replica gets what its
        spec asks for on a node of an allowed tier, and no node is over-committed.
        """
        by_id = {j.id: j for j in self.jobs}
        for job_id, replicas in allocation.placements.items():
            job = by_id.get(job_id)
            if job is None or job.status is JobStatus.CANCELLED:
                raise ConfigError(
                    f"allocation places job {job_id}, which is not an unfinished job of this state"
                )
            spec = job.spec
            if len(replicas) != spec.replicas:
                raise CapacityError(
                    f"job {job_id} is a gang of {spec.replicas}, allocation gives {len(replicas)}"
                )
            for p in replicas:
                node = self.cluster.node(p.node_id)
                if not spec.allows(node.tier):
                    raise CapacityError(f"job {job_id} may not run on {node.tier} node {node.id}")
                if not spec.resources.fits_in(p.resources):
                    raise CapacityError(
                        f"job {job_id} asks {spec.resources} per replica, placement gives {p.resources}"
                    )
        for node_id, used in allocation.used_by_node().items():
            node = self.cluster.node(node_id)
            if not used.fits_in(node.capacity):
                raise CapacityError(f"node {node_id} over-committed: {used} placed on {node.capacity}")
