"""Per-round optimizing policies: `genetic`, `pso` (pymoo) and `cpsat` (OR-Tools, exact).

Each decision is a `RoundProblem`: start a subset of the (first ``max_jobs``) waiting jobs on the free
GPUs, maximizing Σ GPUs × (1 + hours waited), i.e. use the GPUs, oldest work first. Running jobs are
never preempted. When everyone waiting fits, there is nothing to optimize and they are simply placed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

from skyline.scheduling.optimizers import Solution, solve_cpsat, solve_genetic, solve_pso
from skyline.scheduling.packing import GPU
from skyline.scheduling.policy import ViewPolicy
from skyline.scheduling.roundproblem import RoundProblem
from skyline.scheduling.view import Decision, JobView, RoundView


def round_problem(view: RoundView, jobs: list[JobView]) -> RoundProblem:
    """The round as an optimization problem over ``jobs`` (whole GPUs; a fraction counts as one)."""
    packer = view.packer
    return RoundProblem(
        node_gpus=tuple(n.gpus for n in packer.nodes),
        node_free=tuple(packer.full),
        job_gpus=tuple(max(1, -(-j.request.total_gpu_milli // GPU)) for j in jobs),
        job_weight=tuple(
            max(1, -(-j.request.total_gpu_milli // GPU)) * (1 + max(view.now_s - j.submit_s, 0.0) / 3600)
            for j in jobs
        ),
    )


class OptimizingPolicy(ViewPolicy):
    """Solve each round's `RoundProblem` with `solve`, then place the chosen jobs (largest first)."""

    max_jobs = 200

    @abstractmethod
    def solve(self, problem: RoundProblem) -> Solution:
        """Which of the problem's jobs to start."""

    def decide(self, view: RoundView) -> Decision:
        decision = Decision()
        packer = view.packer
        waiting = view.waiting[: self.max_jobs]
        if not waiting:
            return decision
        if sum(j.request.total_gpu_milli for j in waiting) <= packer.free_gpu_milli:
            chosen = waiting  # all might fit: try them all
        else:
            solution = self.solve(round_problem(view, waiting))
            chosen = [waiting[k] for k in solution.chosen]
        for job in sorted(chosen, key=lambda j: (-j.request.total_gpu_milli, j.index)):
            placing = packer.best_fit(job.request)
            if placing is not None:
                packer.take(job.request, placing)
                decision.start[job.index] = placing
        return decision


class Genetic(OptimizingPolicy):
    """pymoo GA over random keys with a best-fit decoder/repair; seeded, fixed generations."""

    name = "genetic"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def solve(self, problem: RoundProblem) -> Solution:
        return solve_genetic(problem, seed=self.seed)


class Pso(OptimizingPolicy):
    """pymoo particle swarm over random keys with the same decoder/repair; seeded."""

    name = "pso"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def solve(self, problem: RoundProblem) -> Solution:
        return solve_pso(problem, seed=self.seed)


class Cpsat(OptimizingPolicy):
    """OR-Tools CP-SAT: the optimum of each round (within ``time_limit_s``; see `Solution.optimal`)."""

    name = "cpsat"

    def __init__(self, *, time_limit_s: float = 10.0) -> None:
        self.time_limit_s = time_limit_s

    def solve(self, problem: RoundProblem) -> Solution:
        return solve_cpsat(problem, time_limit_s=self.time_limit_s)


SOLVERS: dict[str, Callable[[RoundProblem], Solution]] = {
    "genetic": solve_genetic,
    "pso": solve_pso,
    "cpsat": solve_cpsat,
}
