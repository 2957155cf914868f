"""`TraceJob` and `Trace`: jobs to replay and (optionally) the cluster they ran on; cluster specs.

Plain slotted records, not `JobSpec`s: an 82,000-job trace loads in well under a second this way, and
the simulator builds core objects only where it crosses the `Executor` port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from skyline.errors import ConfigError
from skyline.scheduling.packing import GPU, NodeSpec, Request


@dataclass(slots=True, kw_only=True)
class TraceJob:
    """One job: when it came, how long it runs alone on consolidated reference GPUs, what it asks.

    Treat as read-only once a `Trace` holds it (not frozen only because frozen construction costs
    ~3x more, which shows on an 82,000-job trace; readers re-time their own jobs in place).

    ``gpu_milli`` is per replica (1000 = one GPU, 460 = a fraction of one device, 8000 = eight GPUs on
    one node); ``replicas`` is the gang size (Philly's 16-GPU job is 16 one-GPU replicas).
    """

    id: str
    submit_s: float
    duration_s: float
    gpu_milli: int = GPU
    replicas: int = 1
    cpu_milli: int = 0
    memory_mib: int = 0
    gpu_type: str | None = None  # allowed models, "|"-separated; None: any
    job_type: str = ""
    user: str = ""
    vc: str = ""
    priority: int = 0
    tiers: frozenset[str] = frozenset()  # tiers it may run on; empty: any

    @property
    def gpus(self) -> float:
        return self.gpu_milli * self.replicas / GPU

    def request(self) -> Request:
        return Request(
            gpu_milli=self.gpu_milli,
            replicas=self.replicas,
            cpu_milli=self.cpu_milli,
            memory_mib=self.memory_mib,
            gpu_types=frozenset(self.gpu_type.split("|")) if self.gpu_type else frozenset(),
            tiers=self.tiers,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """Jobs in submit order, the cluster they belong on (if the trace says), and what was skipped."""

    name: str
    jobs: tuple[TraceJob, ...]
    nodes: tuple[NodeSpec, ...] = ()
    skipped: int = 0
    skipped_examples: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(sorted(self.jobs, key=lambda j: j.submit_s)))

    def slice(self, start: int, stop: int) -> Trace:
        """Jobs ``start`` to ``stop`` (submit order), re-timed so the first arrives at 0."""
        chosen = self.jobs[start:stop]
        if not chosen:
            raise ConfigError(f"job slice {start}:{stop} is empty; the trace has {len(self.jobs)} jobs")
        t0 = chosen[0].submit_s
        return Trace(
            name=f"{self.name}[{start}:{stop}]",
            jobs=tuple(replace(j, submit_s=j.submit_s - t0) for j in chosen),
            nodes=self.nodes,
        )


_SPEC = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?::\s*([A-Za-z0-9_.-]+))?\s*$")


def parse_cluster(spec: str) -> tuple[NodeSpec, ...]:
    """``"64x8"`` = 64 nodes of 8 GPUs; ``"16x8:v100,16x8:k80"`` = typed groups (heterogeneous)."""
    nodes: list[NodeSpec] = []
    for part in spec.split(","):
        match = _SPEC.match(part)
        if not match:
            raise ConfigError(
                f"cluster spec part {part!r} is not NODESxGPUS[:TYPE]; write e.g. 64x8 or 16x8:v100,16x8:k80"
            )
        count, gpus, kind = int(match[1]), int(match[2]), match[3]
        if count < 1 or gpus < 1:
            raise ConfigError(f"cluster spec {part!r}: need at least one node of at least one GPU")
        start = len(nodes)
        nodes.extend(
            NodeSpec(id=f"{kind or 'node'}-{start + i}", gpus=gpus, gpu_type=kind) for i in range(count)
        )
    return tuple(nodes)
