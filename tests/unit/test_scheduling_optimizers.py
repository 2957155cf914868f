"""Round optimizers: CP-SAT is optimal (never below a heuristic), GA/PSO are feasible and seeded."""

from __future__ import annotations

import random

import pytest

from skyline.errors import ConfigError
from skyline.scheduling.optgap import optimality_gaps, view_of_problem
from skyline.scheduling.optimizers import solve_cpsat, solve_genetic, solve_greedy, solve_pso
from skyline.scheduling.policies import make_policy
from skyline.scheduling.roundproblem import RoundProblem, random_round_problem

pytestmark = pytest.mark.unit


def _feasible(problem: RoundProblem, chosen: tuple[int, ...]) -> bool:
    return problem.assign(sorted(chosen, key=lambda j: -problem.job_gpus[j])) is not None


def test_hand_made_round_where_greedy_by_density_is_not_optimal() -> None:
    # two nodes with 4 free GPUs; jobs: 3 GPUs worth 3.3 (density 1.1), and two 4-GPU jobs worth 4.
    # Density-greedy takes the 3-GPU job first and then fits only one 4-GPU job: 7.3; optimum 8.
    problem = RoundProblem(node_gpus=(8, 8), node_free=(4, 4), job_gpus=(3, 4, 4), job_weight=(3.3, 4, 4))
    assert problem.decode([0, 1, 2]) == [0, 1]
    best = solve_cpsat(problem)
    assert best.optimal and best.value == pytest.approx(8)
    assert set(best.chosen) == {1, 2}


def test_multi_node_jobs_need_whole_free_nodes() -> None:
    problem = RoundProblem(node_gpus=(8, 8, 8), node_free=(8, 8, 7), job_gpus=(16, 24), job_weight=(1, 5))
    assert solve_cpsat(problem).chosen == (0,)
    assert problem.decode([1, 0]) == [0]


@pytest.mark.parametrize("seed", range(4))
def test_cpsat_is_never_worse_than_any_heuristic(seed: int) -> None:
    problem = random_round_problem(random.Random(seed), jobs=30)
    best = solve_cpsat(problem)
    assert best.optimal and _feasible(problem, best.chosen)
    for solution in (solve_greedy(problem), solve_genetic(problem, seed=seed), solve_pso(problem, seed=seed)):
        assert _feasible(problem, solution.chosen)
        assert solution.value <= best.value + 1e-9
    for name in ("fifo", "best-fit", "spread", "tiresias-las"):
        policy = make_policy(name)
        assert problem.value(list(policy.decide(view_of_problem(problem)).start)) <= best.value + 1e-9


def test_genetic_and_pso_are_deterministic_per_seed() -> None:
    problem = random_round_problem(random.Random(9), jobs=40)
    assert solve_genetic(problem, seed=1).chosen == solve_genetic(problem, seed=1).chosen
    assert solve_pso(problem, seed=2).chosen == solve_pso(problem, seed=2).chosen


def test_upper_bound_bounds_the_optimum() -> None:
    problem = random_round_problem(random.Random(3), jobs=25)
    assert solve_cpsat(problem).value <= problem.upper_bound() + 1e-9


def test_optgap_shape() -> None:
    result = optimality_gaps(["best-fit", "genetic"], instances=2, jobs=12, seed=0)
    assert set(result["policies"]) == {"best-fit", "genetic"}
    assert set(result["policies"]["genetic"]) == {"gap_median", "gap_p95", "time_ms_median"}
    assert result["policies"]["genetic"]["gap_median"] >= 0
    assert result["optimal_time_ms_median"] > 0


def test_bad_round_problem() -> None:
    with pytest.raises(ConfigError):
        RoundProblem(node_gpus=(8,), node_free=(9,), job_gpus=(1,), job_weight=(1,))
