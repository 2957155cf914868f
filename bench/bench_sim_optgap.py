"""Round optimizers against the CP-SAT optimum: per-round gap (median, p95) and time, at 50-200 jobs.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench sim_optgap  →  bench/results/sim_optgap.json
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import record
from skyline.scheduling.optgap import optimality_gaps

CONTENDERS = ["genetic", "pso", "best-fit", "fifo-backfill", "tiresias-las"]


def main() -> None:
    results: dict[str, Any] = {"note": "shared 2-core machine; CP-SAT 1 worker, 30 s limit per round"}
    for jobs, instances in ((50, 10), (100, 10), (200, 10)):
        result = optimality_gaps(CONTENDERS, instances=instances, jobs=jobs, seed=jobs, time_limit_s=30.0)
        results[f"jobs_{jobs}"] = result
        summary = ", ".join(
            f"{n} {r['gap_median']:.2%}/{r['gap_p95']:.2%} {r['time_ms_median']:.0f} ms"
            for n, r in result["policies"].items()
        )
        print(
            f"  {jobs} jobs: CP-SAT {result['optimal_time_ms_median']:.0f} ms "
            f"(proven {result['optimal_proven']}/{instances}); {summary}"
        )
    print(f"recorded {record('sim_optgap', results)}")


if __name__ == "__main__":
    main()
