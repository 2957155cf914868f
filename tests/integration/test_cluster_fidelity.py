"""Live behaves as simulated: the same three jobs on the live control plane and in the simulator.

A long job runs alone; a short one arrives after the long one crossed tiresias-las' threshold, so LAS
preempts the long job for it, and a shorter one queues behind the short one (FIFO inside a queue). Live,
the jobs are real checkpointing processes under a real agent; the simulator replays the same arrivals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.cluster.fidelity import FidelityConfig, run_fidelity
from skyline.scheduling.policies import LasOptions
from skyline.simulation.trace import TraceJob

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_live_las_preempts_the_long_job_for_the_short_one_exactly_as_simulated(tmp_path: Path) -> None:
    jobs = (
        TraceJob(id="long", submit_s=0.0, duration_s=7.0),
        TraceJob(id="short", submit_s=5.0, duration_s=2.0),
        TraceJob(id="shorter", submit_s=5.5, duration_s=1.0),
    )
    config = FidelityConfig(
        jobs=jobs,
        policy="tiresias-las",
        policy_options=LasOptions(thresholds_gpu_s=(4.0,)),  # the long job is past it at 5 s, the short never
        nodes=1,
        gpus_per_node=1,
        work_dir=tmp_path,
    )
    result = run_fidelity(config)
    by_id = {j.id: j for j in result.jobs}
    # The same schedule in both worlds: the long job preempted once, the short ones never.
    assert [(j.id, j.live_restarts, j.sim_preemptions) for j in result.jobs] == [
        ("long", 1, 1),
        ("short", 0, 0),
        ("shorter", 0, 0),
    ]
    # Simulated (arrivals as submitted live, within a few ms of the trace's): short 5→7, shorter 7→8
    # (FIFO inside queue 0), long 0→5 then 8→10.
    simulated = [by_id[j].sim_jct_s for j in ("short", "shorter", "long")]
    assert simulated == pytest.approx([2.0, 2.5, 10.0], abs=0.05)
    # Live, the same order of completion, each job later only by the processes' start-up and the
    # agents' and the loop's reaction times (a few tenths of a second per start on a quiet machine).
    finished = {j.id: j.live_jct_s + s.submit_s for j, s in zip(result.jobs, jobs, strict=True)}
    assert sorted(finished, key=finished.__getitem__) == ["short", "shorter", "long"]
    for job in result.jobs:
        assert job.sim_jct_s - 0.2 <= job.live_jct_s <= job.sim_jct_s + 4.0, (job.id, job.live_jct_s)
