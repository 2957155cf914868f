"""`JobView` and `RoundView`: the plain, mutable data every policy decides on, in both worlds.

`ClusterState` (core, immutable) is the public snapshot; building one per event would dominate an
82,000-job replay, so policies decide on these views. The live control plane builds a `RoundView` from
its store each pass (`view_of`); the simulator keeps its views alive and updates them in place. Either
way the policy sees the same things: tiers and GPU models (in each `Request` and node pool), attained
service, what it may know of durations, demand forecasts and the throughput matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from skyline.core import DemandForecast
from skyline.scheduling.packing import Packer, Placing, Request


@dataclass(slots=True, kw_only=True)
class JobView:
    """One unfinished job. ``placing`` is where it runs now (None: pending).

    ``duration_s``/``remaining_s`` are what an oracle policy is told (None for the others, and when
    nothing is known): the truth in a simulation, the job's estimate (its own ``estimate_s``, else the
    history of its user's same command) on the live control plane. ``attained_gpu_s`` (service received)
    and ``remaining_s`` (work left, in seconds at full speed) are as of ``progress_at_s``; a running job
    progresses at ``rate`` since then, so read them through `attained_at` / `remaining_at` (the
    simulator then need not touch every running job per decision).
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
    kind: str = "training"  # JobKind: training, inference, batch, service
    group: str = ""  # the jobs of one group (a service's replicas: its name), "" for none
    placing: Placing | None = None
    progress_at_s: float = 0.0
    rate: float = 1.0

    def attained_at(self, now_s: float) -> float:
        """GPU-seconds of service received by ``now_s``."""
        if self.placing is None:
            return self.attained_gpu_s
        return self.attained_gpu_s + (now_s - self.progress_at_s) * self.request.total_gpu_milli / 1000

    def remaining_at(self, now_s: float) -> float:
        """Seconds of full-speed work left at ``now_s`` (oracle policies only; infinite when unknown)."""
        if self.remaining_s is None:
            return math.inf
        if self.placing is None:
            return self.remaining_s
        return max(self.remaining_s - (now_s - self.progress_at_s) * self.rate, 0.0)

    @property
    def gpus(self) -> float:
        """GPUs of the whole gang (fractions included)."""
        return self.request.total_gpu_milli / 1000


@dataclass(slots=True, kw_only=True)
class RoundView:
    """The cluster at ``now_s``: unfinished ``jobs`` and the ``waiting`` ones, both in submit order,
    and a packer holding the running ones.

    ``throughput[job_type][gpu_type]`` is a job type's speed on a GPU model relative to its best (Gavel's
    matrix; missing pairs run at 1), ``forecasts`` the demand forecasts by series name. A policy may take
    and release capacity in ``packer`` freely; its `Decision` must match it on return.
    """

    now_s: float
    jobs: list[JobView]
    waiting: list[JobView]
    packer: Packer
    throughput: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    forecasts: Mapping[str, DemandForecast] = field(default_factory=dict)


@dataclass(slots=True)
class Decision:
    """A policy's answer on views, as a change: running jobs to ``stop`` (preempt), jobs to ``start``.

    Jobs in neither keep their state. A change, not a full target, so that a decision that changes
    little costs little even with thousands of running jobs. ``refused`` names the starts the scheduler
    refused (job index → why: a placement outside the job's tiers, models or gang size).
    """

    start: dict[int, Placing] = field(default_factory=dict)
    stop: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
