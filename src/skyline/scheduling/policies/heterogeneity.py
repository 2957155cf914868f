"""Heterogeneity-aware policies in the manner of Gavel (OSDI'20): allocations over the throughput matrix.

Each decision solves a linear program over the waiting jobs (the oldest ``max_jobs``) and the free GPUs
of each model: ``x[j][k]``, the share of model k job j should get, with Σ_k x[j][k] ≤ 1 per job and
Σ_j gpus_j · x[j][k] ≤ free GPUs of model k. A job's effective throughput is Σ_k speed[j][k] · x[j][k],
its speed on k relative to its best model (Gavel's matrix; 1 where unknown).

- ``max-min-fairness`` (Gavel's heterogeneity-aware LAS): maximize the smallest effective throughput,
  each normalized by what the job would get from an equal, heterogeneity-blind share of every model;
  ties broken towards the larger total throughput.
- ``max-throughput``: maximize Σ_j gpus_j · effective throughput_j (GPU-seconds of reference work per
  second: the cluster's useful output).

The mechanism is simpler than Gavel's leases and time-sharing rounds: running jobs stay where they are
(no migration, so no restart cost), and free GPUs of model k go to waiting jobs in decreasing
``x[j][k]``, so each job lands on the model where it is worth most, given who else waits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from skyline.errors import ConfigError
from skyline.scheduling.packing import GPU, Packer, Request
from skyline.scheduling.policy import Policy, PolicyOptions
from skyline.scheduling.view import Decision, JobView, RoundView

OBJECTIVES = ("max-min-fairness", "max-throughput")
_EPS = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class HeterogeneityOptions(PolicyOptions):
    """``max_jobs``: unfinished jobs in the program (the oldest first; the rest wait for a later round)."""

    max_jobs: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.max_jobs, int) or self.max_jobs < 1:
            raise ConfigError(f"max_jobs must be a whole number >= 1, got {self.max_jobs!r}")


def gang_gpus(request: Request) -> int:
    """Whole GPUs a gang holds (a fraction of a device counts as one)."""
    per_replica = request.whole if request.gpu_milli >= GPU else 1
    return per_replica * request.replicas


def gpu_models(packer: Packer, *, free: bool = False) -> dict[str, int]:
    """GPUs of each model ("" for untyped nodes): all of them, or the fully free ones."""
    totals: dict[str, int] = {}
    for i, node in enumerate(packer.nodes):
        if node.gpus:
            model = packer.pool_of(i)[0]
            totals[model] = totals.get(model, 0) + (packer.full[i] if free else node.gpus)
    return totals


def speeds(view: RoundView, jobs: list[JobView], models: list[str]) -> list[list[float]]:
    """speed[j][k]: job j's throughput on model k over its best (missing pairs run at 1); 0 where the
    job may not use the model."""
    table = []
    for job in jobs:
        known = view.throughput.get(job.job_type, {})
        allowed = job.request.gpu_types
        table.append([0.0 if allowed and m not in allowed else float(known.get(m, 1.0)) for m in models])
    return table


def allocation(
    speed: list[list[float]], gpus: list[int], capacity: list[int], objective: str, *, shares: list[float]
) -> list[list[float]]:
    """``x[j][k]`` from the linear program of the module docstring (scipy's HiGHS)."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import lil_matrix

    n, m = len(speed), len(capacity)
    s = np.asarray(speed, dtype=float)
    g = np.asarray(gpus, dtype=float)
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    fair = objective == "max-min-fairness"
    nvar = n * m + (1 if fair else 0)
    rows = lil_matrix((n + m + (n if fair else 0), nvar))
    for j in range(n):
        rows[j, j * m : (j + 1) * m] = 1.0  # Σ_k x[j][k] ≤ 1
        for k in range(m):
            rows[n + k, j * m + k] = g[j]  # Σ_j gpus_j x[j][k] ≤ capacity_k
    bounds = np.concatenate([np.ones(n), np.asarray(capacity, dtype=float)])
    useful = (s * g[:, None]).ravel()  # GPU-seconds of reference work per unit of x
    cost = -useful / max(float(g.sum()), 1.0)
    if fair:
        equal = np.maximum(s @ np.asarray(shares), _EPS)  # throughput under an equal, blind share of models
        for j in range(n):
            rows[n + m + j, j * m : (j + 1) * m] = -s[j] / equal[j]
            rows[n + m + j, n * m] = 1.0  # t ≤ normalized throughput of every job
        bounds = np.concatenate([bounds, np.zeros(n)])
        cost = np.concatenate([1e-3 * cost, [-1.0]])
    # A gang runs on one model: none bigger than that model, and none where it may not run (speed 0).
    upper = [
        (0.0, 1.0 if s[j, k] > 0 and g[j] <= capacity[k] else 0.0) for j in range(n) for k in range(m)
    ] + ([(0.0, None)] if fair else [])
    result: Any = linprog(cost, A_ub=rows.tocsr(), b_ub=bounds, bounds=upper, method="highs")
    if result.status != 0:
        raise ConfigError(f"the allocation program failed: {result.message}")
    x = np.clip(result.x[: n * m], 0.0, 1.0).reshape(n, m)
    return [list(map(float, row)) for row in x]


class HeterogeneityAware(Policy):
    """Allocations over the throughput matrix (see the module docstring); non-preemptive placement."""

    Options = HeterogeneityOptions
    objective: str = "max-min-fairness"

    def decide(self, view: RoundView) -> Decision:
        assert isinstance(self.options, HeterogeneityOptions)
        decision = Decision()
        packer = view.packer
        waiting = [j for j in view.waiting if packer.could_ever_fit(j.request)]
        gpu_jobs = [j for j in waiting if j.request.gpu_milli][: self.options.max_jobs]
        free = gpu_models(packer, free=True)
        if gpu_jobs and any(free.values()):
            self._place_by_allocation(view, gpu_jobs, free, decision)
        for job in waiting:  # CPU-only jobs: the program is about GPUs
            if not job.request.gpu_milli:
                placing = packer.best_fit(job.request)
                if placing is not None:
                    packer.take(job.request, placing)
                    decision.start[job.index] = placing
        return decision

    def _place_by_allocation(
        self, view: RoundView, jobs: list[JobView], free: dict[str, int], decision: Decision
    ) -> None:
        models = list(free)
        totals = gpu_models(view.packer)
        shares = [totals[m] / sum(totals.values()) for m in models]  # a blind, equal spread over models
        speed = speeds(view, jobs, models)
        gpus = [gang_gpus(j.request) for j in jobs]
        x = allocation(speed, gpus, [free[m] for m in models], self.objective, shares=shares)
        wants = [
            (-x[row][k], job.submit_s, row, models[k])
            for row, job in enumerate(jobs)
            for k in range(len(models))
            if x[row][k] > _EPS and speed[row][k] > 0
        ]
        packer = view.packer
        for _, _, row, model in sorted(wants):
            job = jobs[row]
            if job.index in decision.start or gpus[row] * GPU > packer.free_gpu_milli:
                continue
            placing = packer.best_fit(dataclasses.replace(job.request, gpu_types=frozenset({model})))
            if placing is not None:
                packer.take(job.request, placing)
                decision.start[job.index] = placing


class GavelMaxMin(HeterogeneityAware):
    """Heterogeneity-aware max-min fairness (Gavel's LAS)."""

    name = "gavel-max-min"
    objective = "max-min-fairness"


class GavelThroughput(HeterogeneityAware):
    """Heterogeneity-aware maximum total effective throughput."""

    name = "gavel-throughput"
    objective = "max-throughput"
