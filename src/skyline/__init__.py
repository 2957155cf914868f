"""skyline: run AI workloads across the datacenter, the cloud and the edge.

The top level re-exports the domain model (`skyline.core`) and the error root; each capability lives in
its own sub-package (scheduling, simulation, training, compression, serving, cluster, edge, federated,
security) and is imported from there.
"""

from importlib.metadata import PackageNotFoundError, version

from skyline.core import (
    Allocation,
    Clock,
    Cluster,
    ClusterState,
    DemandForecast,
    Executor,
    Job,
    JobEvent,
    JobKind,
    JobSpec,
    JobStatus,
    Node,
    Placement,
    Resources,
    Tier,
)
from skyline.errors import SkylineError

try:
    __version__ = version("skyline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
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
    "SkylineError",
    "Tier",
    "__version__",
]
