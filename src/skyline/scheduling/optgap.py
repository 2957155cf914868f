"""Per-round optimality gaps: every policy or solver against the CP-SAT optimum of the same rounds."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from skyline.errors import ConfigError
from skyline.scheduling.optimizers import solve_cpsat
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Request
from skyline.scheduling.policies import make_policy
from skyline.scheduling.policies.optimizing import SOLVERS
from skyline.scheduling.roundproblem import RoundProblem, random_round_problem
from skyline.scheduling.view import JobView, RoundView

_NOW_S = 100 * 3600.0


def view_of_problem(problem: RoundProblem) -> RoundView:
    """The round as a `RoundView`: nodes partly busy, jobs waiting; ages encode the weights."""
    packer = Packer([NodeSpec(id=f"n{i}", gpus=g) for i, g in enumerate(problem.node_gpus)])
    for n, (g, free) in enumerate(zip(problem.node_gpus, problem.node_free, strict=True)):
        if g > free:
            packer.take(Request(gpu_milli=GPU), tuple((n, (d,)) for d in range(g - free)))
    jobs = [
        JobView(
            index=j,
            id=f"j{j}",
            request=Request(gpu_milli=GPU, replicas=g),
            submit_s=_NOW_S - (w / g - 1) * 3600,
        )
        for j, (g, w) in enumerate(zip(problem.job_gpus, problem.job_weight, strict=True))
    ]
    jobs.sort(key=lambda v: (v.submit_s, v.index))
    return RoundView(now_s=_NOW_S, jobs=jobs, waiting=list(jobs), packer=packer)


def _solver_for(name: str) -> Callable[[RoundProblem, int], tuple[float, float]]:
    """``(value, seconds)`` of a named solver or policy on a problem, seeded."""
    if name in SOLVERS:
        solve = SOLVERS[name]

        def run_solver(problem: RoundProblem, seed: int) -> tuple[float, float]:
            solution = solve(problem)
            return solution.value, solution.seconds

        return run_solver
    policy = make_policy(name)

    def run_policy(problem: RoundProblem, seed: int) -> tuple[float, float]:
        view = view_of_problem(problem)
        started = time.perf_counter()
        decision = policy.decide(view)
        seconds = time.perf_counter() - started
        # The round's rules: a job of g <= node-size GPUs on one node. A heuristic that split such a
        # job over nodes broke them (the simulator allows it, at a slowdown): that job does not count.
        biggest = problem.max_node_gpus
        kept = [
            j
            for j, placing in decision.start.items()
            if problem.job_gpus[j] > biggest or len({node for node, _ in placing}) == 1
        ]
        return problem.value(kept), seconds

    return run_policy


def optimality_gaps(
    names: Sequence[str],
    *,
    instances: int,
    jobs: int,
    seed: int = 0,
    time_limit_s: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """``{"policies": {name: {gap_median, gap_p95, time_ms_median}}, "optimal_time_ms_median", ...}``.

    Times are wall clock (``time_ms_median``) and, beside them, CPU time (``cpu_ms_median``): on a
    shared machine the CPU time is the fairer figure.
    """
    if instances < 1 or jobs < 1:
        raise ConfigError(f"--instances and --jobs must be >= 1, got {instances} and {jobs}")
    solvers = {name: _solver_for(name) for name in names}
    rng = random.Random(seed)
    gaps: dict[str, list[float]] = {n: [] for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    optimal_ms: list[float] = []
    proven = 0
    for k in range(instances):
        problem = random_round_problem(rng, jobs=jobs)
        best = solve_cpsat(problem, time_limit_s=time_limit_s)
        optimal_ms.append(best.seconds * 1000)
        proven += best.optimal
        for name, solve in solvers.items():
            cpu_started = time.process_time()
            value, seconds = solve(problem, seed + k)
            cpu[name].append((time.process_time() - cpu_started) * 1000)
            gap = (best.value - value) / best.value if best.value else 0.0
            gaps[name].append(0.0 if abs(gap) < 1e-9 else gap)  # float noise of equal sums
            times[name].append(seconds * 1000)
        if progress is not None:
            progress(1)
    return {
        "policies": {
            n: {
                "gap_median": statistics.median(gaps[n]),
                "gap_p95": _p95(gaps[n]),
                "time_ms_median": statistics.median(times[n]),
            }
            for n in names
        },
        "optimal_time_ms_median": statistics.median(optimal_ms),
        "cpu_ms_median": {n: statistics.median(cpu[n]) for n in names},
        "optimal_proven": proven,
        "instances": instances,
        "jobs": jobs,
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
