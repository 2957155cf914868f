"""`Outcome`: what a simulation run produced, job by job, before any summary statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skyline.simulation.config import SimConfig
from skyline.simulation.trace import Trace


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """Per-job start/finish times (None: never), and run-wide accounting (see `skyline.simulation.metrics`)."""

    trace: Trace
    policy: str
    config: SimConfig
    total_gpus: int
    first_start: Sequence[float | None]
    finish: Sequence[float | None]
    preemptions: Sequence[int]
    rejected: tuple[int, ...]
    unfinished: tuple[int, ...]
    decision_s: tuple[float, ...]
    timeline: tuple[tuple[float, float, int], ...]
    busy_gpu_s: float
    idle_while_waiting_gpu_s: float
    waiting_s: float
    wall_s: float
