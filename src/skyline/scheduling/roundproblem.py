"""`RoundProblem`: one scheduling round as an optimization problem, shared by genetic, pso and cpsat.

Choose which waiting jobs to start now on the free GPUs, maximizing Σ weight of the started jobs.
A job of g ≤ (largest node) GPUs must sit on one node (consolidated); a larger one takes whole free
nodes whose GPUs add up to g. Nodes differ only by (GPUs, free GPUs), so a decoder may count nodes
per (GPUs, free) class instead of tracking each one: ≤ 9 classes per node size, O(classes) per job.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RoundProblem:
    """Free whole GPUs per node (``node_free`` of ``node_gpus``), GPU asks and weights per job."""

    node_gpus: tuple[int, ...]
    node_free: tuple[int, ...]
    job_gpus: tuple[int, ...]
    job_weight: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.node_gpus) != len(self.node_free) or len(self.job_gpus) != len(self.job_weight):
            raise ConfigError("RoundProblem: node and job columns must have equal lengths")
        if any(f < 0 or f > g for f, g in zip(self.node_free, self.node_gpus, strict=True)):
            raise ConfigError("RoundProblem: free GPUs must be between 0 and the node's GPUs")
        if any(g < 1 for g in self.job_gpus) or any(w < 0 for w in self.job_weight):
            raise ConfigError("RoundProblem: jobs ask >= 1 GPU and have weights >= 0")

    @property
    def max_node_gpus(self) -> int:
        return max(self.node_gpus, default=0)

    def value(self, chosen: Sequence[int]) -> float:
        return sum(self.job_weight[j] for j in chosen)

    def assign(self, chosen: Sequence[int]) -> dict[int, tuple[int, ...]] | None:
        """Node indices for each of ``chosen`` by best-fit in that order (None if one does not fit)."""
        free = list(self.node_free)
        biggest = self.max_node_gpus
        out: dict[int, tuple[int, ...]] = {}
        for j in chosen:
            g = self.job_gpus[j]
            if g <= biggest:
                fits = [n for n in range(len(free)) if free[n] >= g]
                if not fits:
                    return None
                n = min(fits, key=lambda k: (free[k], k))
                free[n] -= g
                out[j] = (n,)
            else:
                whole = sorted(
                    (n for n in range(len(free)) if free[n] == self.node_gpus[n] and free[n]),
                    key=lambda k: -free[k],
                )
                taken: list[int] = []
                for n in whole:
                    if sum(self.node_gpus[k] for k in taken) >= g:
                        break
                    taken.append(n)
                if sum(self.node_gpus[k] for k in taken) < g:
                    return None
                for n in taken:
                    free[n] = 0
                out[j] = tuple(taken)
        return out

    def decode(self, order: Sequence[int]) -> list[int]:
        """Jobs started when trying ``order`` greedily with best-fit (this is also the repair step:
        any order decodes to a feasible set, since a job that does not fit is skipped)."""
        sizes = sorted(set(self.node_gpus))
        # counts[s][f]: nodes of s GPUs with f free; one small list per node size.
        counts = {s: [0] * (s + 1) for s in sizes}
        for size, free in zip(self.node_gpus, self.node_free, strict=True):
            counts[size][free] += 1
        biggest = sizes[-1] if sizes else 0
        gpus = self.job_gpus
        chosen: list[int] = []
        for j in order:
            g = gpus[j]
            if g <= biggest:
                best_free, best_size = biggest + 1, 0
                for size in sizes:
                    row = counts[size]
                    for f in range(g, min(size, best_free - 1) + 1):
                        if row[f]:
                            best_free, best_size = f, size
                            break
                if not best_size:
                    continue
                row = counts[best_size]
                row[best_free] -= 1
                row[best_free - g] += 1
                chosen.append(j)
            elif self._take_whole_nodes(counts, sizes, g):
                chosen.append(j)
        return chosen

    @staticmethod
    def _take_whole_nodes(counts: dict[int, list[int]], sizes: list[int], g: int) -> bool:
        take: list[tuple[int, int]] = []
        need = g
        for size in reversed(sizes):
            use = min(counts[size][size], -(-need // size))
            if use:
                take.append((size, use))
                need -= use * size
            if need <= 0:
                break
        if need > 0:
            return False
        for size, use in take:
            counts[size][size] -= use
            counts[size][0] += use
        return True

    def upper_bound(self) -> float:
        """Fractional-knapsack bound on the total free GPUs: no feasible answer is worth more."""
        room = float(sum(self.node_free))
        bound = 0.0
        for j in sorted(range(len(self.job_gpus)), key=lambda k: -self.job_weight[k] / self.job_gpus[k]):
            take = min(1.0, room / self.job_gpus[j])
            if take <= 0:
                break
            bound += take * self.job_weight[j]
            room -= take * self.job_gpus[j]
        return bound

    def greedy_orders(self) -> list[list[int]]:
        """Good starting orders: by weight per GPU, by weight, and as given (oldest first)."""
        jobs = range(len(self.job_gpus))
        return [
            sorted(jobs, key=lambda j: (-self.job_weight[j] / self.job_gpus[j], j)),
            sorted(jobs, key=lambda j: (-self.job_weight[j], j)),
            list(jobs),
        ]


def random_round_problem(rng: random.Random, *, jobs: int, nodes: int | None = None) -> RoundProblem:
    """An oversubscribed round: Philly-like GPU asks (1/2/4/8/16), weights = GPUs × (1 + age in hours)
    with ages up to 10 h, on 8-GPU nodes that are partly busy (about 3x more asked than free)."""
    count = nodes if nodes is not None else max(2, jobs // 6)
    free = tuple(rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 8)) for _ in range(count))
    sizes = rng.choices((1, 2, 4, 8, 16), (0.62, 0.12, 0.14, 0.09, 0.03), k=jobs)
    return RoundProblem(
        node_gpus=(8,) * count,
        node_free=free,
        job_gpus=tuple(sizes),
        job_weight=tuple(round(g * (1 + rng.uniform(0, 10)), 3) for g in sizes),
    )
