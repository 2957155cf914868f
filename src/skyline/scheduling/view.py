"""`JobView` and `RoundView`: the plain, mutable data a policy decides on.

`ClusterState` (core, immutable) is the public snapshot; building one per event would dominate an
82,000-job replay, so policies work on these views. `Policy.allocate(state)` converts a `ClusterState`
into a `RoundView` and back; the simulator keeps its views alive and updates them in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from skyline.scheduling.packing import Packer, Placing, Request


@dataclass(slots=True, kw_only=True)
class JobView:
    """One unfinished job. ``placing`` is where it runs now (None: pending).

    ``duration_s``/``remaining_s`` are the truth, filled in only for oracle policies (None otherwise).
    ``remaining_s`` is at reference speed on consolidated GPUs; ``attained_gpu_s`` is service received.
    """

    index: int
    id: str
    request: Request
    submit_s: float
    attained_gpu_s: float = 0.0
    duration_s: float | None = None
    remaining_s: float | None = None
    job_type: str = ""
    priority: int = 0
    restarts: int = 0
    placing: Placing | None = None

    @property
    def gpus(self) -> float:
        """GPUs of the whole gang (fractions included)."""
        return self.request.total_gpu_milli / 1000


@dataclass(slots=True, kw_only=True)
class RoundView:
    """The cluster at ``now_s``: unfinished jobs in submit order, and a packer holding the running ones.

    A policy may take and release capacity in ``packer`` freely; the target it returns must match it.
    """

    now_s: float
    jobs: list[JobView]
    packer: Packer
    throughput: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
