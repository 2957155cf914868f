"""`SimConfig`: how the simulated cluster behaves (restart penalty, consolidation, rounds, window)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Knobs of the simulator.

    ``restart_penalty_s``: work added each time a preempted job restarts (checkpoint reload, warm-up).
    ``consolidation_slowdown``: a gang spread over more nodes than it needs runs this many times slower.
    ``round_s``: 0 decides at every arrival/finish; > 0 decides only every ``round_s`` seconds.
    ``window``: measure only jobs ``[A, B)`` in submit order (steady state); all jobs are still run.
    ``throughput``: ``speed[job_type][gpu_type]`` in (0, 1]; missing pairs run at 1.
    """

    restart_penalty_s: float = 0.0
    consolidation_slowdown: float = 1.0
    round_s: float = 0.0
    window: tuple[int, int] | None = None
    throughput: Mapping[str, Mapping[str, float]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.restart_penalty_s) and self.restart_penalty_s >= 0):
            raise ConfigError(f"restart_penalty_s must be >= 0, got {self.restart_penalty_s}")
        if not (math.isfinite(self.consolidation_slowdown) and self.consolidation_slowdown >= 1):
            raise ConfigError(
                f"consolidation_slowdown must be >= 1 (1 = no slowdown), got {self.consolidation_slowdown}"
            )
        if not (math.isfinite(self.round_s) and self.round_s >= 0):
            raise ConfigError(f"round_s must be >= 0 (0 = event-driven), got {self.round_s}")
        if self.window is not None:
            start, stop = self.window
            if start < 0 or stop <= start:
                raise ConfigError(f"window must be A:B with 0 <= A < B, got {start}:{stop}")
        for job_type, speeds in self.throughput.items():
            for gpu, speed in speeds.items():
                if not 0 < speed <= 1:
                    raise ConfigError(f"throughput[{job_type!r}][{gpu!r}] must be in (0, 1], got {speed}")
        object.__setattr__(self, "throughput", MappingProxyType(dict(self.throughput)))
