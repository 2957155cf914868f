"""Simulator speed and memory: all 82,247 Philly jobs under tiresias-las, and one heuristic decision
for 1,000 waiting jobs on 1,000 nodes (wall and CPU time, medians of 7).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench sim_speed  →  bench/results/sim_speed.json
The replay runs in a fresh subprocess so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import record
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Request
from skyline.scheduling.policies import make_policy
from skyline.scheduling.view import JobView, RoundView

DATA = Path(os.environ.get("SKYLINE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

REPLAY = """
import json, resource, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from pathlib import Path
from skyline.scheduling.policies import make_policy
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import summarize
from skyline.simulation.readers import read_philly
data = Path(sys.argv[1]) / "traces"
trace = read_philly(data / "philly-pollux" / "philly.csv", vc_sizes=data / "helios" / "philly_vc.csv")
t1 = time.perf_counter()
outcome = simulate(trace, make_policy(sys.argv[2]))
m = summarize(outcome)
print(json.dumps({"jobs": len(trace.jobs), "gpus": outcome.total_gpus, "load_s": t1 - t0,
  "simulate_s": outcome.wall_s, "total_wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  "decisions": m["decisions"], "mean_jct_s": m["mean_jct_s"], "preemptions": m["preemptions"]}))
"""


def replay(policy: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", REPLAY, str(DATA), policy], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _view(seed: int, free_fraction: float) -> RoundView:
    rng = random.Random(seed)
    packer = Packer([NodeSpec(id=f"n{i}", gpus=8) for i in range(1000)])
    for n in range(1000):
        busy = 8 if rng.random() > free_fraction else rng.randint(0, 8)
        if busy:
            packer.take(Request(gpu_milli=GPU), tuple((n, (d,)) for d in range(busy)))
    sizes = [1, 1, 1, 1, 1, 1, 1, 2, 4, 8]
    jobs = [
        JobView(
            index=j,
            id=f"j{j}",
            request=Request(gpu_milli=GPU, replicas=rng.choice(sizes)),
            submit_s=float(j),
            duration_s=100.0 + j,
            remaining_s=100.0 + j,
        )
        for j in range(1000)
    ]
    return RoundView(now_s=5000.0, jobs=jobs, waiting=list(jobs), packer=packer)


def decisions() -> dict[str, Any]:
    """Scenario "room": half the nodes partly free (all 1,000 jobs get placed, the costly case);
    "tight": 5% of nodes partly free (most jobs do not fit)."""
    names = [
        "fifo",
        "fifo-backfill",
        "best-fit",
        "spread",
        "sjf",
        "srtf",
        "tiresias-las",
        "tiresias-gittins",
        "fragmentation-aware",
    ]
    out: dict[str, Any] = {}
    for scenario, free in (("room", 1.0), ("tight", 0.05)):
        walls: dict[str, list[float]] = {n: [] for n in names}
        cpus: dict[str, list[float]] = {n: [] for n in names}
        for seed in range(7):  # interleaved: every policy sees the same seven states in turn
            for name in names:
                policy = make_policy(name)
                view = _view(seed, free)
                w, c = time.perf_counter(), time.process_time()
                policy.decide(view)
                walls[name].append((time.perf_counter() - w) * 1000)
                cpus[name].append((time.process_time() - c) * 1000)
        out[scenario] = {
            n: {"wall_ms_median": statistics.median(walls[n]), "cpu_ms_median": statistics.median(cpus[n])}
            for n in names
        }
    return out


def main() -> None:
    results: dict[str, Any] = {"note": "shared 2-core machine (other helpers running): wall times inflated"}
    results["philly_full_replay"] = {p: replay(p) for p in ("tiresias-las", "fifo")}
    print(f"  replay: {results['philly_full_replay']}")
    results["decision_1000_jobs_1000_nodes"] = decisions()
    print(f"  decisions: {results['decision_1000_jobs_1000_nodes']}")
    print(f"recorded {record('sim_speed', results)}")


if __name__ == "__main__":
    main()
