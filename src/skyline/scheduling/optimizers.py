"""Solvers of a `RoundProblem`: genetic algorithm and particle swarm (pymoo), exact CP-SAT (OR-Tools).

GA and PSO search random keys (one number per job; a higher key is tried earlier) decoded by the
problem's greedy best-fit decoder, which is the repair step that enforces capacity. Their first
population holds the greedy orders, so they never do worse than greedy. Both are seeded and run a
fixed number of generations: deterministic. CP-SAT solves the same problem exactly (per node
variables), within a time limit; `Solution.optimal` says whether it proved optimality.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from skyline.scheduling.roundproblem import RoundProblem


@dataclass(frozen=True, slots=True)
class Solution:
    """Jobs to start, their total weight, the solver's time, and whether it is proven optimal."""

    chosen: tuple[int, ...]
    value: float
    seconds: float
    optimal: bool = False


def _keys_of(order: list[int], n: int) -> list[float]:
    keys = [0.0] * n
    for rank, j in enumerate(order):
        keys[j] = 1.0 - rank / max(n, 1)
    return keys


def _run_pymoo(
    problem: RoundProblem, algorithm_name: str, *, seed: int, pop_size: int, generations: int
) -> Solution:
    import numpy as np
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    started = time.perf_counter()
    n = len(problem.job_gpus)
    greedy = [problem.decode(o) for o in problem.greedy_orders()]
    best_greedy = max(greedy, key=problem.value)
    if n <= 1 or (sum(problem.job_gpus) <= sum(problem.node_free) and len(best_greedy) == n):
        return Solution(tuple(best_greedy), problem.value(best_greedy), time.perf_counter() - started)

    class Keys(Problem):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(n_var=n, n_obj=1, xl=0.0, xu=1.0)

        def _evaluate(self, x: Any, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            orders = np.argsort(-np.clip(x, 0.0, 1.0), axis=1, kind="stable")
            out["F"] = np.array([[-problem.value(problem.decode(row.tolist()))] for row in orders])

    rng = np.random.default_rng(seed)
    initial = rng.random((pop_size, n))
    for k, order in enumerate(problem.greedy_orders()[:pop_size]):
        initial[k] = _keys_of(order, n)
    if algorithm_name == "pso":
        from pymoo.algorithms.soo.nonconvex.pso import PSO

        algorithm: Any = PSO(pop_size=pop_size, sampling=initial)
    else:
        from pymoo.algorithms.soo.nonconvex.ga import GA

        algorithm = GA(pop_size=pop_size, sampling=initial, eliminate_duplicates=True)
    result = minimize(Keys(), algorithm, ("n_gen", generations), seed=seed, verbose=False)
    x = np.atleast_2d(result.X)[0]
    order = np.argsort(-np.clip(x, 0.0, 1.0), kind="stable").tolist()
    chosen = problem.decode(order)
    if problem.value(best_greedy) > problem.value(chosen):
        chosen = best_greedy
    return Solution(tuple(chosen), problem.value(chosen), time.perf_counter() - started)


def solve_genetic(
    problem: RoundProblem, *, seed: int = 0, pop_size: int = 16, generations: int = 20
) -> Solution:
    """pymoo's GA (SBX crossover, polynomial mutation) on random keys."""
    return _run_pymoo(problem, "ga", seed=seed, pop_size=pop_size, generations=generations)


def solve_pso(problem: RoundProblem, *, seed: int = 0, pop_size: int = 16, generations: int = 20) -> Solution:
    """pymoo's adaptive PSO on random keys."""
    return _run_pymoo(problem, "pso", seed=seed, pop_size=pop_size, generations=generations)


def solve_greedy(problem: RoundProblem) -> Solution:
    """The best of the greedy orders (what GA and PSO start from)."""
    started = time.perf_counter()
    best = max((problem.decode(o) for o in problem.greedy_orders()), key=problem.value)
    return Solution(tuple(best), problem.value(best), time.perf_counter() - started)


def solve_cpsat(problem: RoundProblem, *, time_limit_s: float = 10.0, workers: int = 1) -> Solution:
    """The exact optimum with OR-Tools CP-SAT (weights scaled to integers, 1e-3 resolution)."""
    from ortools.sat.python import cp_model

    started = time.perf_counter()
    model = cp_model.CpModel()
    biggest = problem.max_node_gpus
    nodes = range(len(problem.node_gpus))
    x = [model.new_bool_var(f"x{j}") for j in range(len(problem.job_gpus))]
    load: list[list[Any]] = [[] for _ in nodes]
    place_vars: dict[tuple[int, int], Any] = {}
    for j, g in enumerate(problem.job_gpus):
        if g <= biggest:
            options = [n for n in nodes if problem.node_free[n] >= g]
            z = {n: model.new_bool_var(f"z{j}_{n}") for n in options}
            place_vars.update({(j, n): var for n, var in z.items()})
            model.add(sum(z.values()) == x[j])
            for n, var in z.items():
                load[n].append(g * var)
        else:
            options = [n for n in nodes if problem.node_free[n] == problem.node_gpus[n]]
            u = {n: model.new_bool_var(f"u{j}_{n}") for n in options}
            place_vars.update({(j, n): var for n, var in u.items()})
            model.add(sum(problem.node_gpus[n] * var for n, var in u.items()) >= g * x[j])
            for n, var in u.items():
                load[n].append(problem.node_gpus[n] * var)
    for n in nodes:
        if load[n]:
            model.add(sum(load[n]) <= problem.node_free[n])
    # A redundant cut that tightens the bound: started jobs never ask more than is free in total.
    model.add(sum(g * x[j] for j, g in enumerate(problem.job_gpus)) <= sum(problem.node_free))
    # Start from the greedy answer, every variable hinted: CP-SAT then only has to improve and prove.
    greedy = solve_greedy(problem).chosen
    where = problem.assign(greedy) or {}
    for j in range(len(x)):
        model.add_hint(x[j], 1 if j in where else 0)
    for (j, n), var in place_vars.items():
        model.add_hint(var, 1 if n in where.get(j, ()) else 0)
    model.maximize(sum(round(w * 1000) * x[j] for j, w in enumerate(problem.job_weight)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = 0
    status = solver.solve(model)
    chosen = tuple(
        j for j in range(len(x)) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) and solver.value(x[j])
    )
    return Solution(
        chosen, problem.value(chosen), time.perf_counter() - started, optimal=status == cp_model.OPTIMAL
    )
