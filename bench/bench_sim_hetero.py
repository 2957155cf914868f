"""Heterogeneity: Gavel-style policies against heterogeneity-blind ones on a V100/P100/K80 cluster.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench sim_hetero  →  bench/results/sim_hetero.json
(SKYLINE_BENCH_QUICK=1: a smoke run, nothing recorded)
Setting, as in Gavel's simulations (OSDI'20): 36 V100 + 36 P100 + 36 K80 GPUs (9 nodes of 4 of each),
Gavel's measured throughputs of its 26 job types (a job's duration is its time on its fastest model),
Philly-like jobs from Gavel's published model with job types drawn uniformly, Poisson arrivals
at several rates, 6-minute scheduling rounds, jobs 20%-80% of the trace measured (steady state).
Reported: mean JCT and makespan of each policy, and the blind/aware ratios (Gavel reports "up to 3.5x"
better average JCT and makespan than heterogeneity-agnostic policies).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import record
from skyline.scheduling.policies import make_policy
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import summarize
from skyline.simulation.synthetic import synthetic_trace
from skyline.simulation.throughput import read_gavel_throughputs
from skyline.simulation.trace import parse_cluster

DATA = Path(os.environ.get("SKYLINE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
THROUGHPUTS = DATA / "traces" / "gavel" / "simulation_throughputs.json"
# A blind policy takes GPU models in the order the nodes are listed: fastest first is its best case (the
# one run here), so the aware policies' ratios are conservative.
CLUSTER = "9x4:v100,9x4:p100,9x4:k80"
BLIND = ("fifo", "fifo-backfill", "tiresias-las")
AWARE = ("gavel-max-min", "gavel-throughput")
KEYS = ("mean_jct_s", "p99_jct_s", "makespan_s", "gpu_utilization", "preemptions", "decision_ms_mean")


def run(jobs: int, jobs_per_hour: float, seeds: int) -> dict[str, Any]:
    """Every policy on ``seeds`` traces at one arrival rate: metrics averaged over seeds."""
    speeds = read_gavel_throughputs(THROUGHPUTS)
    nodes = parse_cluster(CLUSTER)
    config = SimConfig(round_s=360.0, throughput=speeds, window=(jobs // 5, jobs * 4 // 5))
    per_policy: dict[str, dict[str, float]] = {}
    for name in (*BLIND, *AWARE):
        runs = []
        for seed in range(seeds):
            trace = synthetic_trace(
                jobs=jobs, jobs_per_hour=jobs_per_hour, seed=seed, job_types=sorted(speeds)
            )
            started = time.perf_counter()
            metrics = summarize(simulate(trace, make_policy(name), nodes=nodes, config=config))
            runs.append({**{k: float(metrics[k]) for k in KEYS}, "wall_s": time.perf_counter() - started})
        per_policy[name] = {k: sum(r[k] for r in runs) / seeds for k in (*KEYS, "wall_s")}
    best_blind_jct = min(per_policy[b]["mean_jct_s"] for b in BLIND)
    best_blind_span = min(per_policy[b]["makespan_s"] for b in BLIND)
    ratios = {
        aware: {
            "mean_jct_best_blind_over_aware": best_blind_jct / per_policy[aware]["mean_jct_s"],
            "makespan_best_blind_over_aware": best_blind_span / per_policy[aware]["makespan_s"],
            **{
                f"mean_jct_{b}_over_aware": per_policy[b]["mean_jct_s"] / per_policy[aware]["mean_jct_s"]
                for b in BLIND
            },
        }
        for aware in AWARE
    }
    return {"jobs_per_hour": jobs_per_hour, "policies": per_policy, "ratios": ratios}


def main() -> None:
    quick = os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
    jobs, seeds = (300, 1) if quick else (1000, 2)
    rates = (2.0, 4.0) if quick else (2.0, 4.0, 6.0)
    results: dict[str, Any] = {
        "setting": {"cluster": CLUSTER, "jobs": jobs, "seeds": seeds, "round_s": 360, "throughputs": "gavel"},
        "anchor": "Gavel (OSDI'20): heterogeneity-aware policies improve average JCT and makespan by up to 3.5x",
        "rates": [],
    }
    for rate in rates:
        row = run(jobs, rate, seeds)
        results["rates"].append(row)
        for aware, r in row["ratios"].items():
            print(
                f"  {rate:g} jobs/h {aware}: mean JCT best-blind/aware {r['mean_jct_best_blind_over_aware']:.2f}, "
                f"makespan {r['makespan_best_blind_over_aware']:.2f}"
            )
    if quick:
        return  # a smoke run: nothing recorded
    print(f"recorded {record('sim_hetero', results)}")


if __name__ == "__main__":
    main()
