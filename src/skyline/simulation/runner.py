"""Running policies on a trace and summarizing: what `skyline sim` drives (traces: `sources`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError, DataError
from skyline.scheduling.packing import NodeSpec
from skyline.scheduling.policies import policy_class
from skyline.scheduling.policy import Policy, options_for, takes_option
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import CONTRACT_KEYS, summarize
from skyline.simulation.outcome import Outcome
from skyline.simulation.sources import TraceSource, load_trace
from skyline.simulation.trace import Trace, parse_cluster


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


def build_policy(name: str, *, gittins_prior: Sequence[float] | None = None) -> Policy:
    """A registered policy; ``gittins_prior`` (GPU-time samples) goes to it when it takes a prior."""
    cls = policy_class(name)
    values: dict[str, Any] = {}
    if gittins_prior is not None and takes_option(cls, "prior_gpu_s"):
        values["prior_gpu_s"] = tuple(gittins_prior)
    return cls(options_for(cls, **values))


def read_gput_prior(path: Path) -> list[float]:
    """Tiresias' ``yarn-gput*.csv``: one column ``duration`` of GPU-seconds samples."""
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
    policy: Policy,
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


def check_throughputs(trace: Trace, config: SimConfig) -> None:
    """A throughput matrix none of whose job types the trace names would change nothing: refuse it."""
    if config.throughput and not any(job.job_type in config.throughput for job in trace.jobs):
        raise ConfigError(
            f"no job of trace {trace.name} has a job type of the throughput matrix "
            f"({', '.join(sorted(config.throughput)[:5])}, ...): --throughputs would change nothing; drop it"
        )


def simulate_policy(
    source: TraceSource,
    policy: Policy,
    cluster: str | None,
    config: SimConfig,
    progress: Callable[[int], None] | None = None,
) -> tuple[Trace, dict[str, Any]]:
    """Load the trace, replay it under ``policy`` and summarize: the trace and the ``sim run`` payload."""
    trace = load_trace(source)
    check_throughputs(trace, config)
    _, metrics = run_one(trace, policy, cluster_for(trace, cluster), config, progress)
    payload = {
        "policy": policy.name,
        "jobs": len(trace.jobs),
        "metrics": contract_metrics(metrics),
        "details": metrics,
        "skipped_rows": trace.skipped,
    }
    return trace, payload
