"""The control plane's executor family: one interface (`ClusterExecutor`), one registry (`EXECUTORS`).

A `ClusterExecutor` is the core `Executor` port (start, stop, events) plus what a live control plane
needs: ``notify`` (an event the store already derived), ``release`` (a cancelled job's replicas),
``refresh`` (poll the backend), ``flush`` (end of a scheduling pass) and ``close``. Every member runs
the contract suite in tests/contract/test_executor_contract.py, as does the simulator's executor
(`skyline.simulation.executor.SimExecutor`, the same port without a store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from skyline.cluster.store import Store
from skyline.core import Executor, JobEvent
from skyline.core.net import PortRange
from skyline.errors import ConfigError


class ClusterExecutor(Executor, Protocol):
    """An `Executor` the control plane can also notify, release (cancel), refresh, flush and close."""

    name: str

    def notify(self, event: JobEvent) -> None:
        """An event the store derived from an agent's report (queue it, or ignore it if applied)."""
        ...

    def release(self, job_id: str) -> None:
        """A cancelled job: stop its replicas (the store already marked it cancelled)."""
        ...

    def refresh(self) -> None:
        """Poll the backend (its nodes, its replicas) at the start of a pass."""
        ...

    def flush(self) -> None:
        """The scheduling pass is over: write what `start` collected."""
        ...

    def close(self) -> None:
        """Release the backend (idempotent)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorConfig:
    """Settings of an executor. ``ray_address`` (Ray only; None: auto); ``ready_timeout_s``: how long a
    Ray placement group may stay unplaced before its job goes back to the queue."""

    master_ports: PortRange = field(default_factory=PortRange)
    ray_address: str | None = None
    ready_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.ready_timeout_s > 0:
            raise ConfigError(f"ready_timeout_s must be > 0 seconds, got {self.ready_timeout_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorKind:
    """A registry entry: how to build the executor and which `ExecutorConfig` fields it uses."""

    build: Callable[[Store, ExecutorConfig], ClusterExecutor]
    uses: frozenset[str] = frozenset({"master_ports"})
    help: str = ""


def _local(store: Store, config: ExecutorConfig) -> ClusterExecutor:
    from skyline.cluster.agent_executor import AgentExecutor

    return AgentExecutor(store, master_ports=config.master_ports)


def _ray(store: Store, config: ExecutorConfig) -> ClusterExecutor:
    from skyline.cluster.ray_executor import RayExecutor

    return RayExecutor(
        store,
        address=config.ray_address,
        master_ports=config.master_ports,
        ready_timeout_s=config.ready_timeout_s,
    )


EXECUTORS: dict[str, ExecutorKind] = {
    "local": ExecutorKind(build=_local, help="replicas as processes under node agents"),
    "ray": ExecutorKind(
        build=_ray,
        uses=frozenset({"master_ports", "ray_address", "ready_timeout_s"}),
        help="replicas as Ray tasks in placement groups on an existing Ray cluster",
    ),
}


def executor_kind(name: str) -> ExecutorKind:
    """The registered kind; a `ConfigError` listing the names on a typo."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}") from None
