"""`Node` and `Tier`: one machine of the cluster and where it stands."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skyline.core.resources import GPU_MILLI, Resources
from skyline.errors import ConfigError


class Tier(enum.StrEnum):
    """Where a node runs: costs, latency and trust differ between them."""

    DATACENTER = "datacenter"
    CLOUD = "cloud"
    EDGE = "edge"

    @classmethod
    def parse(cls, value: str) -> Tier:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise ConfigError(f"unknown tier {value!r}: choose one of {choices}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A machine: its total ``capacity``, its ``tier``, free-form ``labels`` and its price."""

    id: str
    capacity: Resources
    tier: Tier = Tier.DATACENTER
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    cost_per_hour: float = 0.0

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ConfigError(f"Node.id must be a non-empty string, got {self.id!r}")
        object.__setattr__(self, "tier", Tier.parse(str(self.tier)))  # also accepts the plain name
        if self.cost_per_hour < 0:
            raise ConfigError(f"Node {self.id}: cost_per_hour must be >= 0, got {self.cost_per_hour}")
        if self.capacity.gpu_milli % GPU_MILLI:
            raise ConfigError(
                f"Node {self.id}: a node has whole GPUs, got {self.capacity.gpus:g}; "
                "fractions belong to requests"
            )
        # A read-only copy, so a frozen node cannot change under a policy's feet.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def gpu_count(self) -> int:
        """Number of physical GPU devices."""
        return self.capacity.gpu_milli // GPU_MILLI
