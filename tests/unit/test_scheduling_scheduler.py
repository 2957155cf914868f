"""The Scheduler applies a policy's decision through the Executor port; the packer's placements."""

from __future__ import annotations

import pytest

from skyline.core import Cluster, ClusterState, Job, JobSpec, JobStatus, Node, Resources, Tier
from skyline.errors import NotFoundError
from skyline.scheduling.packing import NodeSpec, Packer, Request
from skyline.scheduling.policies import POLICIES, make_policy
from skyline.scheduling.policy import Policy, view_of
from skyline.scheduling.scheduler import Scheduler
from skyline.scheduling.view import Decision, RoundView
from skyline.testing.scheduling import FixedClock, RecordingExecutor, gang, state_of

pytestmark = pytest.mark.unit


def _step(scheduler: Scheduler, state: ClusterState) -> Decision:
    view = view_of(state, oracle=scheduler.policy.oracle)
    return scheduler.step(view, lambda index: state.jobs[index].spec)


def test_step_starts_what_the_policy_places() -> None:
    executor = RecordingExecutor()
    scheduler = Scheduler(make_policy("fifo"), FixedClock(), executor)
    state = state_of(1, 8, [gang("a", 4), gang("b", 8, submit_s=1), gang("c", 2, submit_s=2)])
    decision = _step(scheduler, state)
    assert set(decision.start) == {0}  # b blocks c: FIFO without backfill
    assert executor.calls == [("start", "a")]
    assert len(scheduler.decision_s) == 1


def test_step_preempts_through_the_executor() -> None:
    executor = RecordingExecutor()
    scheduler = Scheduler(make_policy("srtf"), FixedClock(), executor)
    long_job = gang("long", 8, duration_s=1000).transition(JobStatus.PLACED, at_s=0)
    first = scheduler.policy.allocate(state_of(1, 8, [long_job]))
    _step(scheduler, state_of(1, 8, [long_job]))
    short = gang("short", 8, submit_s=5, duration_s=1)
    _step(scheduler, state_of(1, 8, [long_job, short], running=first, now_s=5))
    assert executor.calls == [("start", "long"), ("stop", "long"), ("start", "short")]
    assert scheduler.preemptions == 1


def test_a_start_outside_the_jobs_tier_is_refused_and_the_others_go_on() -> None:
    """A policy that ignores tiers (a bug) cannot place a job there: the scheduler refuses that start."""

    class Careless(Policy):
        name = "careless"

        def decide(self, view: RoundView) -> Decision:
            decision = Decision()
            for job in view.waiting:  # every job on node 0, whatever its tiers
                placing = ((0, (0,)),)
                view.packer.take(job.request, placing)
                decision.start[job.index] = placing
                break
            return decision

    executor = RecordingExecutor()
    scheduler = Scheduler(Careless(), FixedClock(), executor)
    edge_only = Job(spec=JobSpec(id="e", resources=Resources.of(gpus=1), tiers=frozenset({Tier.EDGE})))
    nodes = [Node(id=f"n-{t}", capacity=Resources.of(gpus=8), tier=t) for t in (Tier.DATACENTER, Tier.EDGE)]
    state = ClusterState(now_s=0, cluster=Cluster(nodes), jobs=(edge_only,))
    decision = _step(scheduler, state)
    assert not decision.start and "edge" in decision.refused[0]
    assert executor.calls == []


def test_registry_names_and_unknown_policy() -> None:
    assert {"fifo", "best-fit", "tiresias-las", "srtf", "genetic", "pso", "cpsat"} <= set(POLICIES)
    with pytest.raises(NotFoundError, match="unknown policy 'nope'"):
        make_policy("nope")


def test_best_fit_packs_and_spread_spreads() -> None:
    packer = Packer([NodeSpec(id=f"n{i}", gpus=8) for i in range(3)])
    packer.take(
        Request(gpu_milli=1000, replicas=6), packer.best_fit(Request(gpu_milli=1000, replicas=6)) or ()
    )
    placing = packer.best_fit(Request(gpu_milli=1000, replicas=2))
    assert placing is not None and {n for n, _ in placing} == {0}  # the fullest node that fits
    spread = packer.spread(Request(gpu_milli=1000, replicas=2))
    assert spread is not None and {n for n, _ in spread} == {1, 2}


def test_gang_spans_nodes_only_when_it_must() -> None:
    packer = Packer([NodeSpec(id=f"n{i}", gpus=8) for i in range(3)])
    placing = packer.best_fit(Request(gpu_milli=1000, replicas=16))
    assert placing is not None and len({n for n, _ in placing}) == 2
    packer.take(Request(gpu_milli=1000, replicas=16), placing)
    assert packer.best_fit(Request(gpu_milli=1000, replicas=9)) is None


def test_fragmentation_aware_prefers_the_device_it_fills_best() -> None:
    packer = Packer([NodeSpec(id="n0", gpus=2), NodeSpec(id="n1", gpus=2)])
    half = Request(gpu_milli=500)
    packer.take(half, ((0, (0,)),))
    packer.workload = [(500, 0.5), (1000, 0.5)]
    placing = packer.fragmentation_aware(half)
    assert placing == ((0, (0,)),)  # fills the half-used device rather than breaking a whole one
