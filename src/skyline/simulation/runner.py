"""Loading a trace by format, running policies on it, sweeping load: what `skyline sim` drives."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError
from skyline.scheduling.packing import NodeSpec
from skyline.scheduling.policies import make_policy
from skyline.scheduling.policies.tiresias import TiresiasGittins
from skyline.scheduling.policy import Policy, ViewPolicy
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import CONTRACT_KEYS, summarize
from skyline.simulation.outcome import Outcome
from skyline.simulation.readers import read_generic, read_openb, read_philly
from skyline.simulation.synthetic import resample, synthetic_trace
from skyline.simulation.trace import Trace, parse_cluster

FORMATS = ("philly", "openb", "generic", "synthetic")


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSource:
    """Where a trace comes from. ``path`` may be None only for ``synthetic``."""

    format: str
    path: Path | None = None
    vc: str | None = None
    vc_sizes: Path | None = None
    nodes: Path | None = None
    skip_invalid: bool = False
    jobs: int | None = None  # synthetic / resampled size, or a cap on the first N jobs of a file
    jobs_per_hour: float | None = None  # load sweep: resample at this rate
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown trace format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.format != "synthetic" and self.path is None:
            raise ConfigError(f"--format {self.format} needs --trace PATH")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")


def load_trace(source: TraceSource) -> Trace:
    """Read (or generate) the trace; resample it at ``jobs_per_hour`` when asked."""
    if source.format == "synthetic":
        return synthetic_trace(
            jobs=source.jobs or 1000, jobs_per_hour=source.jobs_per_hour or 30.0, seed=source.seed
        )
    assert source.path is not None
    if source.format == "philly":
        trace = read_philly(
            source.path, vc_sizes=source.vc_sizes, vc=source.vc, skip_invalid=source.skip_invalid
        )
    elif source.format == "openb":
        trace = read_openb(source.path, nodes=source.nodes, skip_invalid=source.skip_invalid)
    else:
        trace = read_generic(source.path, skip_invalid=source.skip_invalid)
    if source.jobs_per_hour is not None:
        return resample(
            trace, jobs=source.jobs or len(trace.jobs), jobs_per_hour=source.jobs_per_hour, seed=source.seed
        )
    if source.jobs is not None and source.jobs < len(trace.jobs):
        return trace.slice(0, source.jobs)
    return trace


def cluster_for(trace: Trace, spec: str | None) -> tuple[NodeSpec, ...]:
    """``--cluster`` if given, else the trace's own nodes (an error when it has none)."""
    if spec:
        return parse_cluster(spec)
    if not trace.nodes:
        raise ConfigError(
            f"trace {trace.name} carries no cluster: pass --cluster NODESxGPUS (e.g. 8x8), "
            "or --vc-sizes / --nodes for Philly / openb"
        )
    return trace.nodes


def build_policy(name: str, *, gittins_prior: Sequence[float] | None = None) -> ViewPolicy:
    """A registered policy ready for the simulator (Gittins gets the given GPU-time prior)."""
    policy: Policy = (
        TiresiasGittins(prior_gpu_s=gittins_prior)
        if name == "tiresias-gittins" and gittins_prior
        else make_policy(name)
    )
    if not isinstance(policy, ViewPolicy):
        raise ConfigError(f"policy {name!r} cannot run in the simulator")
    return policy


def read_gput_prior(path: Path) -> list[float]:
    """Tiresias' ``yarn-gput*.csv``: one column ``duration`` of GPU-seconds samples."""
    from skyline.errors import DataError

    values: list[float] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read Gittins prior {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines[1:], start=2):
        try:
            values.append(float(line))
        except ValueError:
            raise DataError(f"{path}:{number}: field 'duration' is not a number (got {line!r})") from None
    return values


def run_one(
    trace: Trace,
    policy: ViewPolicy,
    nodes: Sequence[NodeSpec],
    config: SimConfig,
    progress: Callable[[int], None] | None = None,
) -> tuple[Outcome, dict[str, Any]]:
    """Simulate and summarize."""
    outcome = simulate(trace, policy, nodes=nodes, config=config, progress=progress)
    return outcome, summarize(outcome)


def contract_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Exactly the keys of the ``sim run`` JSON contract, in order."""
    return {k: metrics[k] for k in CONTRACT_KEYS}


def mean_metrics(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average of numeric metrics over seeds."""
    keys = runs[0].keys()
    return {k: statistics.fmean(float(r[k]) for r in runs) for k in keys}
