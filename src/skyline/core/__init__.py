"""The domain model and the ports: standard library only, no I/O.

Desired state (`JobSpec`), a policy's answer (`Allocation` of `Placement`s), observed state (`Job`,
`JobStatus`), the snapshot policies decide on (`ClusterState`), and the `Clock` / `Executor` ports.
"""

from skyline.core.allocation import Allocation, Placement
from skyline.core.cluster import Cluster
from skyline.core.forecast import DemandForecast
from skyline.core.job import Job, JobKind, JobSpec, JobStatus
from skyline.core.node import Node, Tier
from skyline.core.ports import Clock, Executor, JobEvent
from skyline.core.resources import GPU_MILLI, Resources
from skyline.core.state import ClusterState

__all__ = [
    "GPU_MILLI",
    "Allocation",
    "Clock",
    "Cluster",
    "ClusterState",
    "DemandForecast",
    "Executor",
    "Job",
    "JobEvent",
    "JobKind",
    "JobSpec",
    "JobStatus",
    "Node",
    "Placement",
    "Resources",
    "Tier",
]
