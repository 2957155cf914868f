"""`Cluster`: the set of nodes, indexed by id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from skyline.core.node import Node, Tier
from skyline.core.resources import Resources
from skyline.errors import ConfigError, NotFoundError


@dataclass(frozen=True, slots=True)
class Cluster:
    """An immutable set of nodes with unique ids, in a stable order."""

    nodes: tuple[Node, ...]
    _by_id: dict[str, Node] = field(init=False, repr=False, compare=False, hash=False)

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        object.__setattr__(self, "nodes", tuple(nodes))
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if node.id in by_id:
                raise ConfigError(f"duplicate node id {node.id!r}: node ids must be unique")
            by_id[node.id] = node
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def uniform(
        cls, count: int, capacity: Resources, *, prefix: str = "node", tier: Tier = Tier.DATACENTER
    ) -> Cluster:
        """``count`` identical nodes named ``{prefix}-0`` ... (e.g. 32 nodes of 8 GPUs)."""
        if count < 1:
            raise ConfigError(f"a cluster needs at least one node, got count={count}")
        return cls(Node(id=f"{prefix}-{i}", capacity=capacity, tier=tier) for i in range(count))

    def node(self, node_id: str) -> Node:
        try:
            return self._by_id[node_id]
        except KeyError:
            raise NotFoundError(f"no node {node_id!r} in the cluster") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def capacity(self) -> Resources:
        """Total capacity, ignoring GPU models (a mixed cluster has no single type)."""
        return Resources(
            cpu_milli=sum(n.capacity.cpu_milli for n in self.nodes),
            memory_mib=sum(n.capacity.memory_mib for n in self.nodes),
            gpu_milli=sum(n.capacity.gpu_milli for n in self.nodes),
        )

    def in_tier(self, tier: Tier) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.tier is tier)
