"""Per-round optimizing policies: `genetic`, `pso` (pymoo) and `cpsat` (OR-Tools, exact).

Each decision is a `RoundProblem`: start a subset of the (first ``max_jobs``) waiting jobs on the free
GPUs, maximizing Σ GPUs × (1 + hours waited), i.e. use the GPUs, oldest work first. Running jobs are
never preempted. When everyone waiting fits, there is nothing to optimize and they are simply placed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from skyline.errors import ConfigError
from skyline.scheduling.optimizers import Solution, solve_cpsat, solve_genetic, solve_pso
from skyline.scheduling.packing import GPU
from skyline.scheduling.policy import Policy, PolicyOptions
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


class OptimizingPolicy(Policy):
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedOptions(PolicyOptions):
    """``seed`` of the metaheuristic (runs are deterministic for a seed)."""

    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CpsatOptions(PolicyOptions):
    """``time_limit_s``: CP-SAT's budget per round (the answer is then the best found)."""

    time_limit_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be > 0, got {self.time_limit_s}")


class Genetic(OptimizingPolicy):
    """pymoo GA over random keys with a best-fit decoder/repair; seeded, fixed generations."""

    name = "genetic"
    Options = SeedOptions

    def solve(self, problem: RoundProblem) -> Solution:
        assert isinstance(self.options, SeedOptions)
        return solve_genetic(problem, seed=self.options.seed)


class Pso(OptimizingPolicy):
    """pymoo particle swarm over random keys with the same decoder/repair; seeded."""

    name = "pso"
    Options = SeedOptions

    def solve(self, problem: RoundProblem) -> Solution:
        assert isinstance(self.options, SeedOptions)
        return solve_pso(problem, seed=self.options.seed)


class Cpsat(OptimizingPolicy):
    """OR-Tools CP-SAT: the optimum of each round (within ``time_limit_s``; see `Solution.optimal`)."""

    name = "cpsat"
    Options = CpsatOptions

    def solve(self, problem: RoundProblem) -> Solution:
        assert isinstance(self.options, CpsatOptions)
        return solve_cpsat(problem, time_limit_s=self.options.time_limit_s)


SOLVERS: dict[str, Callable[[RoundProblem], Solution]] = {
    "genetic": solve_genetic,
    "pso": solve_pso,
    "cpsat": solve_cpsat,
}
