"""`Placement` and `Allocation`: a policy's answer to "what runs where"."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skyline.core.resources import Resources
from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """One replica on one node. ``gpu_indices`` names devices when the policy packs fractions."""

    node_id: str
    resources: Resources
    gpu_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(i < 0 for i in self.gpu_indices):
            raise ConfigError(f"gpu_indices must be >= 0, got {self.gpu_indices}")


@dataclass(frozen=True, slots=True)
class Allocation:
    """Which jobs run, and where, after a scheduling decision: job id → one `Placement` per replica.

    A running job missing from the next allocation is preempted; a pending job in it is started.
    Whether it respects capacity and gangs is checked by `ClusterState.check`.
    """

    placements: Mapping[str, tuple[Placement, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {job_id: tuple(p) for job_id, p in self.placements.items()}
        for job_id, replicas in frozen.items():
            if not replicas:
                raise ConfigError(f"allocation for job {job_id} has no placements; leave the job out instead")
        object.__setattr__(self, "placements", MappingProxyType(frozen))

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.placements

    def __iter__(self) -> Iterator[str]:
        return iter(self.placements)

    def __len__(self) -> int:
        return len(self.placements)

    def used_by_node(self) -> dict[str, Resources]:
        """Resources taken on each node by all placements."""
        used: dict[str, Resources] = {}
        for replicas in self.placements.values():
            for p in replicas:
                used[p.node_id] = used.get(p.node_id, Resources()) + p.resources
        return used
