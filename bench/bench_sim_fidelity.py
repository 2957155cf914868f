"""Fidelity: live vs simulated job completion times on the same Philly slice, per policy.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench sim_fidelity  →  bench/results/sim_fidelity.json
(SKYLINE_BENCH_QUICK=1: 40 jobs, one policy, nothing recorded; about 2 minutes)

200 consecutive jobs of Philly VC 6214e9 (Pollux's pool: duration >= 60 s, < 1,000 GPU-hours), every
time multiplied by 0.01 (durations at least 2 s, at most 60 s), arrivals re-timed to an effective load
of 1.0 on 32 GPUs. Live: a control plane on this machine, 4 agent processes of 8 GPU slots each, every
job a gang of real checkpointing processes (`skyline.cluster.sleeper`); the simulator replays the same
jobs arriving when they were submitted live, with the same policy and options (Tiresias' thresholds
and Gittins prior scaled by the same 0.01). Target: mean JCT within 5% for fifo, tiresias-las and
tiresias-gittins. About 4 minutes of live replay per policy (12-15 minutes in all).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import record
from skyline.cluster.fidelity import FidelityConfig, run_fidelity, scale_slice
from skyline.scheduling.policies import policy_class
from skyline.scheduling.policy import time_scaled
from skyline.simulation.readers import read_philly
from skyline.simulation.synthetic import at_load
from skyline.simulation.trace import Trace, TraceJob

DATA = Path(os.environ.get("SKYLINE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PHILLY = DATA / "traces" / "philly-pollux" / "philly.csv"
VC, START, SCALE, MIN_S, MAX_S, LOAD = "6214e9", 3000, 0.01, 2.0, 60.0, 1.0
NODES, GPUS = 4, 8
POLICIES = ("fifo", "tiresias-las", "tiresias-gittins")


def workload(jobs: int) -> tuple[TraceJob, ...]:
    """The slice: Pollux's pool of the VC, scaled, durations capped, arrivals at the target load."""
    full = read_philly(PHILLY)
    pool = tuple(j for j in full.jobs if j.vc == VC and j.duration_s >= 60 and j.duration_s * j.gpus < 3.6e6)
    sliced = scale_slice(
        Trace(name=VC, jobs=pool),
        start=START,
        jobs=jobs,
        time_scale=SCALE,
        min_s=MIN_S,
        max_gpus=NODES * GPUS,
    )
    capped = Trace(name="slice", jobs=tuple(replace(j, duration_s=min(j.duration_s, MAX_S)) for j in sliced))
    return at_load(capped, load=LOAD, total_gpus=NODES * GPUS).jobs


def main() -> None:
    quick = os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
    jobs = workload(40 if quick else 200)
    results: dict[str, Any] = {
        "setting": {
            "trace": f"philly VC {VC}, jobs from {START}", "jobs": len(jobs), "time_scale": SCALE,
            "duration_s": [MIN_S, MAX_S], "effective_load": LOAD, "nodes": NODES, "gpus_per_node": GPUS,
        },
        "target": "mean JCT live vs simulated within 5%",
        "policies": {},
    }  # fmt: skip
    for name in POLICIES[:1] if quick else POLICIES:
        options = time_scaled(policy_class(name).Options(), SCALE)
        with tempfile.TemporaryDirectory(prefix=f"fidelity-{name}-") as work:
            started = time.monotonic()
            result = run_fidelity(
                FidelityConfig(jobs=jobs, policy=name, policy_options=options, work_dir=Path(work))
            )
        summary = result.summary()
        summary["bench_wall_s"] = time.monotonic() - started
        summary["per_job"] = [
            {
                "id": j.id,
                "gpus": j.gpus,
                "duration_s": j.duration_s,
                "live_jct_s": j.live_jct_s,
                "sim_jct_s": j.sim_jct_s,
            }
            for j in result.jobs
        ]
        results["policies"][name] = summary
        print(
            f"  {name}: mean JCT live {summary['mean_jct_live_s']:.1f} s, sim {summary['mean_jct_sim_s']:.1f} s, "
            f"error {summary['mean_jct_error']:+.1%}; per-job |error| median {summary['job_abs_error_median']:.1%}, "
            f"p90 {summary['job_abs_error_p90']:.1%}; preemptions live {summary['preemptions_live']} "
            f"sim {summary['preemptions_sim']}; {summary['live_wall_s']:.0f} s live"
        )
    if quick:
        print("quick run: not recorded")
        return
    print(f"recorded {record('sim_fidelity', results)}")


if __name__ == "__main__":
    main()
