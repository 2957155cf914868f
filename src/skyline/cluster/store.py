"""`Store`: the control plane's durable state, a job store and a node store over one database.

Everything that must survive a SIGKILL goes through here: each transition is committed before it is
acknowledged. ``store.jobs`` (`JobStore`) holds jobs, their replicas and event history; ``store.logs``
(`LogStore`) their output lines; ``store.nodes`` (`NodeStore`) nodes, heartbeats, utilization samples
and the replicas each must run; ``store.services`` (`ServiceStore`) services, their replicas,
telemetry and autoscaling decisions; all share one `Database` (engine, write lock, clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from skyline.cluster.database import Database
from skyline.cluster.job_store import JobStore
from skyline.cluster.log_store import LogStore
from skyline.cluster.node_store import NodeStore
from skyline.cluster.service_store import ServiceStore


class Store:
    """The whole control-plane state at ``url`` (SQLite or PostgreSQL), migrated on open."""

    def __init__(self, url: str, *, now: Callable[[], float] = time.time) -> None:
        self.db = Database(url, now=now)
        self.jobs = JobStore(self.db)
        self.logs = LogStore(self.db)
        self.nodes = NodeStore(self.db)
        self.services = ServiceStore(self.db)

    @property
    def url(self) -> str:
        return self.db.url

    def now(self) -> float:
        """The store's clock (wall-clock seconds since the epoch, as its timestamps)."""
        return self.db.now()

    def close(self) -> None:
        self.db.close()
