"""The packer's placements: CPU-only gangs span nodes only when they must; no placement ever overcommits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.core import Cluster, ClusterState, Job, JobSpec, Node, Resources
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Placing, Request
from skyline.scheduling.policies import POLICIES, make_policy

pytestmark = pytest.mark.unit

PLACERS = ("best_fit", "spread", "fragmentation_aware")


def cpu_nodes(*cpus: int, memory_mib: int = 8192) -> Packer:
    return Packer(
        [NodeSpec(id=f"n{i}", gpus=0, cpu_milli=c, memory_mib=memory_mib) for i, c in enumerate(cpus)]
    )


def nodes_of(placing: Placing | None) -> list[int]:
    assert placing is not None
    return [node for node, _ in placing]


@pytest.mark.parametrize("placer", PLACERS)
def test_a_cpu_gang_spans_two_nodes_when_neither_holds_it(placer: str) -> None:
    packer = cpu_nodes(2000, 2000)
    request = Request(gpu_milli=0, replicas=2, cpu_milli=2000, memory_mib=1024)
    assert packer.could_ever_fit(request)
    placing = getattr(packer, placer)(request)
    assert sorted(nodes_of(placing)) == [0, 1]
    packer.take(request, placing)
    assert packer.cpu_free == [0, 0] and packer.mem_free == [7168, 7168]
    assert getattr(packer, placer)(Request(gpu_milli=0, cpu_milli=1)) is None


@pytest.mark.parametrize("placer", PLACERS)
def test_a_cpu_gang_stays_on_one_node_when_one_holds_it(placer: str) -> None:
    packer = cpu_nodes(2000, 4000, 8000)
    placing = getattr(packer, placer)(Request(gpu_milli=0, replicas=2, cpu_milli=2000))
    assert len(set(nodes_of(placing))) == 1
    if placer != "spread":
        assert set(nodes_of(placing)) == {1}  # the tightest node that holds both (best-fit)
    else:
        assert set(nodes_of(placing)) == {2}  # the roomiest (worst-fit)


def test_a_spanning_gang_uses_the_fewest_nodes_and_the_tightest_last_one() -> None:
    # Room for 1, 3, 2 and 4 replicas of 1 CPU; 6 replicas: the 4-node and the 2-node (2 nodes, tightest
    # holder of the remaining 2), not 4 + 3.
    packer = cpu_nodes(1000, 3000, 2000, 4000)
    placing = packer.best_fit(Request(gpu_milli=0, replicas=6, cpu_milli=1000))
    assert nodes_of(placing) == [3, 3, 3, 3, 2, 2]
    spread = packer.spread(Request(gpu_milli=0, replicas=6, cpu_milli=1000))
    assert nodes_of(spread) == [3, 3, 3, 3, 1, 1]  # worst-fit: the roomiest holder of the rest


def test_memory_limits_a_node_share_too() -> None:
    packer = cpu_nodes(8000, 8000, memory_mib=3000)
    placing = packer.best_fit(Request(gpu_milli=0, replicas=3, cpu_milli=1000, memory_mib=1500))
    assert sorted(nodes_of(placing)) == [0, 0, 1]


def test_a_cpu_gang_larger_than_the_cluster_never_fits() -> None:
    packer = cpu_nodes(2000, 2000)
    request = Request(gpu_milli=0, replicas=5, cpu_milli=1000)
    assert not packer.could_ever_fit(request)
    assert packer.best_fit(request) is None and packer.spread(request) is None


@pytest.mark.parametrize("policy", ["fifo", "best-fit", "spread", "fragmentation-aware", "srtf", "cpsat"])
def test_policies_place_a_ddp_gang_across_two_cpu_nodes(policy: str) -> None:
    two_cpus = Resources.of(cpus=2, memory_mib=4096)
    state = ClusterState(
        now_s=0.0,
        cluster=Cluster([Node(id="n0", capacity=two_cpus), Node(id="n1", capacity=two_cpus)]),
        jobs=(Job(spec=JobSpec(id="ddp", resources=Resources.of(cpus=2, memory_mib=1024), replicas=2)),),
    )
    allocation = make_policy(policy).allocate(state)
    state.check(allocation)
    assert sorted(p.node_id for p in allocation.placements["ddp"]) == ["n0", "n1"]


# ---------------------------------------------------------------------------------------------- property

node_st = st.builds(
    lambda gpus, cpu, mem: NodeSpec(id="", gpus=gpus, cpu_milli=cpu, memory_mib=mem),
    st.integers(0, 4),
    st.sampled_from([0, 1000, 2000, 4000]),
    st.sampled_from([0, 2048, 8192]),
)
request_st = st.builds(
    lambda gpu, replicas, cpu, mem: Request(gpu_milli=gpu, replicas=replicas, cpu_milli=cpu, memory_mib=mem),
    st.sampled_from([0, 0, 250, 500, GPU, 2 * GPU]),
    st.integers(1, 5),
    st.sampled_from([0, 500, 1000, 2000]),
    st.sampled_from([0, 512, 2048]),
)


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(node_st, min_size=1, max_size=5),
    requests=st.lists(request_st, min_size=1, max_size=12),
    placer=st.sampled_from(PLACERS),
)
def test_no_placement_overcommits_and_gangs_are_all_or_nothing(
    specs: list[NodeSpec], requests: list[Request], placer: str
) -> None:
    nodes = [
        NodeSpec(id=f"n{i}", gpus=s.gpus, cpu_milli=s.cpu_milli, memory_mib=s.memory_mib)
        for i, s in enumerate(specs)
    ]
    packer = Packer(nodes)
    for request in requests:
        fits = [
            _replicas_fitting(c, m, request) for c, m in zip(packer.cpu_free, packer.mem_free, strict=True)
        ]
        placing = getattr(packer, placer)(request)
        if placing is None:
            if request.gpu_milli == 0 and packer.checks_cpu:
                assert sum(fits) < request.replicas  # a CPU-only gang with room somewhere is always placed
            continue
        assert len(placing) == request.replicas  # all of the gang, never part of it
        if request.gpu_milli == 0 and len({n for n, _ in placing}) > 1:
            assert max(fits) < request.replicas  # spans nodes only when no single node holds it
        assert packer.can_take(request, placing)
        packer.take(request, placing)
        if packer.checks_cpu:
            assert min(packer.cpu_free) >= 0 and min(packer.mem_free) >= 0
        assert all(0 <= free <= GPU for devices in packer.dev_free for free in devices)


def _replicas_fitting(cpu_milli: int, memory_mib: int, request: Request) -> int:
    return min(
        request.replicas,
        cpu_milli // request.cpu_milli if request.cpu_milli else request.replicas,
        memory_mib // request.memory_mib if request.memory_mib else request.replicas,
    )


# ------------------------------------------------------------------------------- every policy, property

cpu_node_st = st.tuples(st.integers(1, 4), st.sampled_from([1024, 4096]))  # (CPUs, MiB)
cpu_job_st = st.tuples(
    st.integers(1, 4), st.integers(1, 3), st.sampled_from([256, 1024])
)  # replicas, CPUs, MiB


@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=25, deadline=None)
@given(nodes=st.lists(cpu_node_st, min_size=1, max_size=4), jobs=st.lists(cpu_job_st, min_size=1, max_size=6))
def test_every_policy_places_cpu_gangs_whole_and_within_capacity(
    policy: str, nodes: list[tuple[int, int]], jobs: list[tuple[int, int, int]]
) -> None:
    state = ClusterState(
        now_s=0.0,
        cluster=Cluster(
            Node(id=f"n{i}", capacity=Resources.of(cpus=c, memory_mib=m)) for i, (c, m) in enumerate(nodes)
        ),
        jobs=tuple(
            Job(
                spec=JobSpec(
                    id=f"j{k}",
                    resources=Resources.of(cpus=c, memory_mib=m),
                    replicas=r,
                    submit_time_s=float(k),
                    duration_s=10.0,
                )
            )
            for k, (r, c, m) in enumerate(jobs)
        ),
    )
    allocation = make_policy(policy).allocate(state)
    state.check(allocation)  # every gang whole, no node over its CPUs or memory
    first_replicas, first_cpus, first_mib = jobs[0]
    room = sum(min(c // first_cpus, m // first_mib) for c, m in nodes)
    if room >= first_replicas:  # the head of the queue fits the idle cluster: every policy starts it
        assert "j0" in allocation
