"""Hand-computed schedules: 3 jobs on one GPU under each policy, and the simulator's cluster effects."""

from __future__ import annotations

import pytest

from skyline.scheduling.policies import make_policy
from skyline.scheduling.policies.tiresias import LasOptions, TiresiasLas
from skyline.scheduling.policy import Policy
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import summarize
from skyline.simulation.trace import parse_cluster
from skyline.testing.scheduling import trace_of

pytestmark = pytest.mark.unit

# A: submit 0, 10 s; B: submit 1, 2 s; C: submit 2, 1 s; one GPU.
THREE = trace_of([(0, 10, 1), (1, 2, 1), (2, 1, 1)])
ONE_GPU = parse_cluster("1x1")


def _jct(policy: Policy, config: SimConfig | None = None) -> list[float]:
    outcome = simulate(THREE, policy, nodes=ONE_GPU, config=config)
    return [f - j.submit_s for f, j in zip(outcome.finish, THREE.jobs, strict=True)]  # type: ignore[operator]


def _policy(name: str) -> Policy:
    return make_policy(name)


def test_fifo_runs_in_arrival_order() -> None:
    # A 0-10, B 10-12, C 12-13
    assert _jct(_policy("fifo")) == [10, 11, 11]


def test_sjf_picks_the_shortest_waiting_job_without_preempting() -> None:
    # A 0-10 (alone at 0), then C (1 s) 10-11, then B 11-13
    assert _jct(_policy("sjf")) == [10, 12, 9]


def test_srtf_preempts_for_shorter_remaining_time() -> None:
    # A 0-1; B arrives with 2 < 9 left: B 1-3 (C ties B at t=2, B is older); C 3-4; A 4-13
    outcome = simulate(THREE, _policy("srtf"), nodes=ONE_GPU)
    assert _jct(_policy("srtf")) == [13, 2, 2]
    assert list(outcome.preemptions) == [1, 0, 0]


def test_restart_penalty_is_added_when_a_preempted_job_restarts() -> None:
    # as SRTF above, but A restarts at 4 with 9 + 5 s of work: finishes at 18
    assert _jct(_policy("srtf"), SimConfig(restart_penalty_s=5))[0] == 18


def test_tiresias_las_demotes_at_the_threshold() -> None:
    # threshold 1.5 GPU-s. A runs 0-1.5 (B at t=1 shares queue 0, A is older), demoted at 1.5: B runs;
    # C arrives at 2 (queue 0, younger than B); B is demoted at 3.0 -> C 3-4; queue 1 in FIFO: A 4-12.5,
    # B 12.5-13.
    jct = _jct(TiresiasLas(LasOptions(thresholds_gpu_s=(1.5,))))
    assert jct == pytest.approx([12.5, 12.0, 2.0])


def test_mean_jct_fifo_vs_srtf_by_hand() -> None:
    fifo = summarize(simulate(THREE, _policy("fifo"), nodes=ONE_GPU))
    srtf = summarize(simulate(THREE, _policy("srtf"), nodes=ONE_GPU))
    assert fifo["mean_jct_s"] == pytest.approx(32 / 3)
    assert srtf["mean_jct_s"] == pytest.approx(17 / 3)
    assert srtf["preemptions"] == 1
    assert fifo["makespan_s"] == 13


def test_spread_gang_pays_the_consolidation_slowdown_and_best_fit_does_not() -> None:
    trace = trace_of([(0, 100, 4)])
    nodes = parse_cluster("2x4")
    config = SimConfig(consolidation_slowdown=2.0)
    spread = simulate(trace, _policy("spread"), nodes=nodes, config=config)
    packed = simulate(trace, _policy("best-fit"), nodes=nodes, config=config)
    assert spread.finish[0] == 200
    assert packed.finish[0] == 100


def test_heterogeneous_gpu_speed_from_throughputs() -> None:
    trace = trace_of([(0, 10, 1)], job_type="resnet")
    config = SimConfig(throughput={"resnet": {"k80": 0.5, "v100": 1.0}})
    assert simulate(trace, _policy("fifo"), nodes=parse_cluster("1x1:k80"), config=config).finish[0] == 20
    assert simulate(trace, _policy("fifo"), nodes=parse_cluster("1x1:v100"), config=config).finish[0] == 10


def test_fractional_gpus_share_a_device() -> None:
    trace = trace_of([(0, 10, 1), (0, 10, 1), (0, 10, 1)], gpu_milli=500)
    outcome = simulate(trace, _policy("best-fit"), nodes=ONE_GPU)
    assert sorted(outcome.finish) == [10, 10, 20]  # type: ignore[type-var]


def test_a_job_bigger_than_the_cluster_is_rejected_not_stuck() -> None:
    trace = trace_of([(0, 10, 1), (0, 10, 16)])
    outcome = simulate(trace, _policy("fifo"), nodes=parse_cluster("1x8"))
    assert outcome.rejected == (1,)
    assert outcome.finish[0] == 10
    assert summarize(outcome)["rejected_jobs"] == 1


def test_rounds_delay_decisions_to_round_boundaries() -> None:
    trace = trace_of([(5, 10, 1)])
    outcome = simulate(trace, _policy("fifo"), nodes=ONE_GPU, config=SimConfig(round_s=60))
    assert outcome.first_start[0] == 60
    assert outcome.finish[0] == 70


def test_window_measures_only_the_chosen_jobs() -> None:
    outcome = simulate(THREE, _policy("fifo"), nodes=ONE_GPU, config=SimConfig(window=(1, 3)))
    metrics = summarize(outcome)
    assert metrics["measured_jobs"] == 2
    assert metrics["mean_jct_s"] == 11
