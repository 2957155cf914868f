"""The contract every registered scheduling policy passes (run by tests/contract/test_policy_contract.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from skyline.core import (
    Allocation,
    Cluster,
    ClusterState,
    Job,
    JobSpec,
    JobStatus,
    Node,
    Placement,
    Resources,
    Tier,
)
from skyline.scheduling.packing import NodeSpec
from skyline.scheduling.policy import Policy
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import Simulation, simulate
from skyline.simulation.synthetic import synthetic_trace
from skyline.simulation.trace import Trace, parse_cluster
from skyline.testing.scheduling import gang, state_of


def check_identity(name: str, policy: Policy) -> None:
    assert policy.name == name, f"registry key {name!r} but policy.name {policy.name!r}"
    assert isinstance(policy.oracle, bool)
    assert isinstance(policy, Policy)


def check_empty_state(policy: Policy) -> None:
    assert len(policy.allocate(state_of(2, 8, []))) == 0


def check_feasible_and_busy(policy: Policy) -> None:
    """Pending work on an idle cluster: a feasible allocation that starts something, and no job that
    could never fit."""
    jobs = [gang("a", 4, submit_s=0), gang("b", 8, submit_s=1), gang("c", 2, submit_s=2), gang("huge", 64)]
    state = state_of(2, 8, jobs)
    allocation = policy.allocate(state)
    state.check(allocation)
    assert len(allocation) >= 1
    assert "huge" not in allocation


def check_respects_running(policy: Policy) -> None:
    """A full cluster of running jobs: a non-preemptive policy keeps them; every policy stays feasible
    and keeps the placement of whatever running job it keeps."""
    running_jobs = [
        gang("r1", 8, submit_s=0).transition(JobStatus.PLACED, at_s=0).transition(JobStatus.RUNNING, at_s=0),
    ]
    first = policy.allocate(state_of(1, 8, running_jobs))
    waiting = [gang("w1", 8, submit_s=5, duration_s=1)]
    state = state_of(1, 8, running_jobs + waiting, running=first, now_s=10)
    allocation = policy.allocate(state)
    state.check(allocation)
    if "r1" in allocation:
        assert allocation.placements["r1"] == first.placements["r1"]
    if not getattr(policy, "preemptive", False):
        assert "r1" in allocation and "w1" not in allocation


def check_deterministic(policy_a: Policy, policy_b: Policy) -> None:
    jobs = [
        gang(f"j{k}", g, submit_s=k, duration_s=10 * (k + 1)) for k, g in enumerate([1, 2, 4, 8, 1, 2, 4])
    ]
    state: ClusterState = state_of(2, 8, jobs)
    a, b = policy_a.allocate(state), policy_b.allocate(state)
    assert dict(a.placements) == dict(b.placements)


def check_simulates(policy: Policy) -> None:
    """A small synthetic replay in 10-minute rounds: every job finishes, none twice, JCT >= duration."""
    trace = synthetic_trace(jobs=16, jobs_per_hour=20, seed=3)
    outcome = simulate(trace, policy, nodes=parse_cluster("2x8"), config=SimConfig(round_s=600))
    assert not outcome.unfinished and not outcome.rejected
    for job, finish, start in zip(trace.jobs, outcome.finish, outcome.first_start, strict=True):
        assert finish is not None and start is not None
        assert finish - job.submit_s >= job.duration_s - 1e-6


def check_empty_allocation_type(policy: Policy) -> None:
    assert isinstance(policy.allocate(state_of(1, 1, [])), Allocation)


def tiered_state() -> ClusterState:
    """A datacenter node and an edge node of 8 GPUs; jobs for each tier, one for either, and one for
    the cloud, which no node is (it can never be placed and must hold up nobody)."""

    def job(job_id: str, submit_s: float, tiers: frozenset[Tier]) -> Job:
        spec = JobSpec(
            id=job_id, resources=Resources.of(gpus=1), replicas=4, submit_time_s=submit_s, tiers=tiers
        )
        return Job(spec=spec)

    nodes = [
        Node(id="dc", capacity=Resources.of(cpus=32, memory_mib=65536, gpus=8), tier=Tier.DATACENTER),
        Node(id="edge", capacity=Resources.of(cpus=32, memory_mib=65536, gpus=8), tier=Tier.EDGE),
    ]
    jobs = [
        job("cloud-only", 0, frozenset({Tier.CLOUD})),
        job("edge-only", 1, frozenset({Tier.EDGE})),
        job("dc-only", 2, frozenset({Tier.DATACENTER})),
        job("anywhere", 3, frozenset()),
    ]
    return ClusterState(now_s=10, cluster=Cluster(nodes), jobs=tuple(jobs))


def check_tiers(policy: Policy) -> None:
    """Each tiered job only on its tier; the one no node can hold is left waiting and blocks nobody."""
    state = tiered_state()
    allocation = policy.allocate(state)
    state.check(allocation)  # checks tiers too
    assert "cloud-only" not in allocation
    assert {p.node_id for p in allocation.placements["edge-only"]} == {"edge"}
    assert {p.node_id for p in allocation.placements["dc-only"]} == {"dc"}
    assert "anywhere" in allocation


def check_simulated_tiers(policy: Policy) -> None:
    """The same rule in a replay: every start of a tiered job is on its tier, and every job finishes."""
    nodes = (
        NodeSpec(id="dc-0", gpus=8, tier="datacenter"),
        NodeSpec(id="edge-0", gpus=8, tier="edge"),
    )
    trace = synthetic_trace(jobs=12, jobs_per_hour=12, seed=5)
    tiers: tuple[frozenset[str], ...] = (frozenset({"edge"}), frozenset({"datacenter"}), frozenset())
    jobs = tuple(
        replace(j, tiers=tiers[k % 3], replicas=min(j.replicas, 8)) for k, j in enumerate(trace.jobs)
    )
    trace = Trace(name="tiered", jobs=jobs)
    simulation = Simulation(trace, nodes, policy, SimConfig(round_s=600))
    starts: list[tuple[str, set[str]]] = []
    started = simulation.executor._on_start  # observe what the scheduler starts, then let it happen

    def observe(spec: JobSpec, placements: Sequence[Placement]) -> None:
        starts.append((spec.id, {p.node_id.split("-")[0] for p in placements}))
        started(spec, placements)

    simulation.executor._on_start = observe
    outcome = simulation.run()
    assert not outcome.unfinished and not outcome.rejected
    wanted = {j.id: {"dc" if t == "datacenter" else t for t in j.tiers} for j in trace.jobs}
    for job_id, used in starts:
        assert not wanted[job_id] or used <= wanted[job_id], (
            f"{job_id} ran on {used}, may use {wanted[job_id]}"
        )
