"""Tiresias (NSDI'19): discretized two-dimensional LAS and Gittins on attained GPU-time.

Neither is told durations. 2D-LAS puts a job in queue k when its attained service (GPU-seconds, the
second dimension being the GPU count) has passed k thresholds; lower queues run first, FIFO inside a
queue. 2D-Gittins ranks by the Gittins index of the attained service under a prior distribution of
GPU-time (the YARN/Philly samples Tiresias ships, or any samples given), evaluated at the same
discrete service levels, so ranks only change when a job crosses a level.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field

from skyline.errors import ConfigError
from skyline.scheduling.policies.ranked import RankedPolicy
from skyline.scheduling.policy import PolicyOptions
from skyline.scheduling.view import JobView

# GPU-second thresholds between queues: 1 GPU-hour, 10 GPU-hours (3 queues).
DEFAULT_LAS_THRESHOLDS_GPU_S: tuple[float, ...] = (3_600.0, 36_000.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class LasOptions(PolicyOptions):
    """``thresholds_gpu_s``: attained GPU-seconds between the queues (positive, increasing)."""

    thresholds_gpu_s: tuple[float, ...] = DEFAULT_LAS_THRESHOLDS_GPU_S

    def __post_init__(self) -> None:
        levels = tuple(float(t) for t in self.thresholds_gpu_s)
        if not levels or any(b <= a for a, b in itertools.pairwise(levels)) or any(t <= 0 for t in levels):
            raise ConfigError(f"LAS thresholds must be positive and increasing, got {levels}")
        object.__setattr__(self, "thresholds_gpu_s", levels)


class TiresiasLas(RankedPolicy):
    """Discretized 2D-LAS: multi-level queues on attained GPU-time, FIFO within a queue, preemptive."""

    name = "tiresias-las"
    preemptive = True
    Options = LasOptions

    def __init__(self, options: PolicyOptions | None = None) -> None:
        super().__init__(options)
        assert isinstance(self.options, LasOptions)
        self.service_levels = self.options.thresholds_gpu_s

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        return (bisect.bisect_right(self.service_levels, job.attained_at(now_s)), job.submit_s, job.index)


def philly_like_gpu_time_prior(count: int = 4_000) -> list[float]:
    """GPU-seconds drawn (deterministically, by stratification) from Gavel's Philly-like model.

    Durations 10^U(1.5, 3) minutes for 80% of jobs and 10^U(3, 4) for 20%; 1/2/4/8 GPUs at 70/10/15/5%.
    """
    samples: list[float] = []
    gpu_mix = ((1, 0.70), (2, 0.10), (4, 0.15), (8, 0.05))
    for gpus, share in gpu_mix:
        n = max(1, round(count * share))
        for i in range(n):
            u = (i + 0.5) / n
            minutes = 10 ** (1.5 + 1.5 * (u / 0.8)) if u < 0.8 else 10 ** (3 + (u - 0.8) / 0.2)
            samples.append(minutes * 60 * gpus)
    return sorted(samples)


@dataclass(frozen=True, slots=True, kw_only=True)
class GittinsOptions(PolicyOptions):
    """``prior_gpu_s``: GPU-time samples of past jobs (default: Gavel's Philly-like model);
    ``levels``: service levels on a geometric grid between the smallest and largest sample."""

    prior_gpu_s: tuple[float, ...] = field(default_factory=lambda: tuple(philly_like_gpu_time_prior()))
    levels: int = 24

    def __post_init__(self) -> None:
        samples = tuple(sorted(float(s) for s in self.prior_gpu_s))
        if len(samples) < 2 or samples[0] <= 0:
            raise ConfigError("a Gittins prior needs at least 2 positive GPU-time samples")
        object.__setattr__(self, "prior_gpu_s", samples)
        if not isinstance(self.levels, int) or self.levels < 2:
            raise ConfigError(f"Gittins levels must be a whole number >= 2, got {self.levels!r}")


class TiresiasGittins(RankedPolicy):
    """Discretized 2D-Gittins index on attained GPU-time (higher index runs first), preemptive."""

    name = "tiresias-gittins"
    preemptive = True
    Options = GittinsOptions

    def __init__(self, options: PolicyOptions | None = None) -> None:
        super().__init__(options)
        assert isinstance(self.options, GittinsOptions)
        samples = list(self.options.prior_gpu_s)
        # Service levels on a geometric grid from the smallest to the largest sample.
        low, high = samples[0], samples[-1]
        levels = self.options.levels
        ratio = (high / low) ** (1 / max(levels - 1, 1))
        self.service_levels = tuple(low * ratio**k for k in range(levels))
        prefix = [0.0]
        for s in samples:
            prefix.append(prefix[-1] + s)
        self._index = [self._gittins(samples, prefix, a) for a in (0.0, *self.service_levels)]

    def _gittins(self, samples: list[float], prefix: list[float], attained: float) -> float:
        """max over quanta Δ of P(S ≤ a+Δ | S > a) / E[min(S − a, Δ) | S > a] (Gittins' index)."""
        start = bisect.bisect_right(samples, attained)
        if start == len(samples):
            return math.inf  # beyond every sample: expected to end at any moment
        best = 0.0
        for level in self.service_levels:
            quantum = level - attained
            if quantum <= 0:
                continue
            end = bisect.bisect_right(samples, attained + quantum)
            done = end - start
            # Σ min(s − a, Δ) over s > a: the ones that finish within Δ, plus Δ for each survivor.
            cost = (prefix[end] - prefix[start]) - done * attained + (len(samples) - end) * quantum
            best = max(best, done / cost if cost > 0 else 0.0)
        return best

    def key(self, job: JobView, now_s: float) -> tuple[float, ...]:
        level = bisect.bisect_right(self.service_levels, job.attained_at(now_s))
        return (-self._index[level], job.submit_s, job.index)
