from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.core import (
    Allocation,
    Cluster,
    ClusterState,
    DemandForecast,
    Job,
    JobSpec,
    JobStatus,
    Node,
    Placement,
    Resources,
    Tier,
)
from skyline.errors import CapacityError, ConfigError, ConflictError, NotFoundError

pytestmark = pytest.mark.unit

EIGHT_GPUS = Resources.of(cpus=32, memory_mib=256_000, gpus=8)


def spec(job_id: str, gpus: float = 1, replicas: int = 1, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, resources=Resources.of(cpus=1, gpus=gpus), replicas=replicas, **kw)  # type: ignore[arg-type]


def test_node_refuses_fractional_gpu_capacity_and_negative_cost() -> None:
    with pytest.raises(ConfigError, match="whole GPUs"):
        Node(id="n", capacity=Resources(gpu_milli=1500))
    with pytest.raises(ConfigError, match="cost_per_hour"):
        Node(id="n", capacity=EIGHT_GPUS, cost_per_hour=-1)
    assert Node(id="n", capacity=EIGHT_GPUS).gpu_count == 8


def test_node_parses_tier_names_and_freezes_labels() -> None:
    labels = {"zone": "a"}
    node = Node(id="e", capacity=EIGHT_GPUS, tier="edge", labels=labels)  # type: ignore[arg-type]
    labels["zone"] = "b"
    assert node.tier is Tier.EDGE and node.labels["zone"] == "a"
    with pytest.raises(ConfigError, match="unknown tier 'moon'"):
        Tier.parse("moon")


def test_cluster_indexes_nodes_and_refuses_duplicates() -> None:
    cluster = Cluster.uniform(4, EIGHT_GPUS)
    assert len(cluster) == 4 and cluster.capacity().gpus == 32
    assert cluster.node("node-2").id == "node-2"
    with pytest.raises(NotFoundError, match="node-9"):
        cluster.node("node-9")
    with pytest.raises(ConfigError, match="duplicate"):
        Cluster([Node(id="a", capacity=EIGHT_GPUS), Node(id="a", capacity=EIGHT_GPUS)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas"),
        ({"submit_time_s": -1.0}, "submit_time_s"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
    ],
)
def test_jobspec_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec("j", **kwargs)


def test_jobspec_needs_some_resources() -> None:
    with pytest.raises(ConfigError, match="some CPU"):
        JobSpec(id="j", resources=Resources())


def test_job_life_cycle() -> None:
    job = Job(spec=spec("j", submit_time_s=10))
    running = job.transition(JobStatus.PLACED, at_s=11).transition(JobStatus.RUNNING, at_s=12)
    preempted = running.transition(JobStatus.PENDING, at_s=20)
    assert preempted.restarts == 1 and preempted.start_time_s == 12
    done = preempted.transition(JobStatus.PLACED, at_s=30).transition(JobStatus.RUNNING, at_s=31)
    done = done.transition(JobStatus.SUCCEEDED, at_s=100, exit_code=0)
    assert done.status.is_finished() and done.jct_s == 90 and done.exit_code == 0
    with pytest.raises(ConflictError, match="succeeded to running"):
        done.transition(JobStatus.RUNNING, at_s=101)
    assert not JobStatus.RUNNING.is_finished()


def state_with(jobs: list[JobSpec], nodes: int = 2) -> ClusterState:
    return ClusterState(
        now_s=0, cluster=Cluster.uniform(nodes, EIGHT_GPUS), jobs=tuple(Job(spec=s) for s in jobs)
    )


def test_check_accepts_a_feasible_gang_and_rejects_broken_ones() -> None:
    state = state_with([spec("gang", gpus=4, replicas=2)])
    per_replica = Resources.of(cpus=1, gpus=4)
    ok = Allocation({"gang": (Placement(node_id="node-0", resources=per_replica),) * 2})
    state.check(ok)
    half = Allocation({"gang": (Placement(node_id="node-0", resources=per_replica),)})
    with pytest.raises(CapacityError, match="gang of 2"):
        state.check(half)
    too_much = Allocation(
        {"gang": (Placement(node_id="node-0", resources=Resources.of(cpus=1, gpus=6)),) * 2}
    )
    with pytest.raises(CapacityError, match="over-committed"):
        state.check(too_much)


def test_check_enforces_tiers_and_known_jobs() -> None:
    state = state_with([spec("edge-only", tiers=frozenset({Tier.EDGE}))])
    place = Allocation({"edge-only": (Placement(node_id="node-0", resources=Resources.of(cpus=1, gpus=1)),)})
    with pytest.raises(CapacityError, match="may not run"):
        state.check(place)
    with pytest.raises(ConfigError, match="not an unfinished job"):
        state.check(Allocation({"ghost": (Placement(node_id="node-0", resources=Resources.of(gpus=1)),)}))


def test_state_splits_pending_and_active_and_computes_free() -> None:
    jobs = [spec("a", gpus=8), spec("b", gpus=2)]
    running = Allocation({"a": (Placement(node_id="node-0", resources=Resources.of(cpus=1, gpus=8)),)})
    state = ClusterState(
        now_s=5,
        cluster=Cluster.uniform(2, EIGHT_GPUS),
        jobs=tuple(Job(spec=s) for s in jobs),
        running=running,
    )
    assert [j.id for j in state.active()] == ["a"] and [j.id for j in state.pending()] == ["b"]
    free = state.free_by_node()
    assert free["node-0"].gpu_milli == 0 and free["node-1"].gpu_milli == 8000


def test_forecast_lookup_and_validation() -> None:
    f = DemandForecast(series="gpus", start_s=0, step_s=60, point=(1, 2, 3), quantiles={0.9: (2, 3, 4)})
    assert f.at(61) == 2 and f.at(10_000) == 3 and f.at(0, quantile=0.9) == 2
    with pytest.raises(ConfigError, match=r"quantile 0\.9 has 1 steps"):
        DemandForecast(series="gpus", start_s=0, step_s=60, point=(1, 2), quantiles={0.9: (1,)})


@settings(max_examples=60)
@given(requests=st.lists(st.integers(1, 8000), min_size=1, max_size=30))
def test_first_fit_never_over_commits_and_release_restores(requests: list[int]) -> None:
    """Place requests first-fit, checking each allocation; then release them all."""
    cluster = Cluster.uniform(3, EIGHT_GPUS)
    specs = [JobSpec(id=f"j{i}", resources=Resources(gpu_milli=g)) for i, g in enumerate(requests)]
    state = ClusterState(now_s=0, cluster=cluster, jobs=tuple(Job(spec=s) for s in specs))
    free = {n.id: n.capacity for n in cluster}
    placed: dict[str, tuple[Placement, ...]] = {}
    for s in specs:
        node = next((n for n, left in free.items() if s.resources.fits_in(left)), None)
        candidate = Allocation(
            {**placed, s.id: (Placement(node_id=node or "node-0", resources=s.resources),)}
        )
        if node is None:
            with pytest.raises(CapacityError):
                state.check(candidate)
            continue
        state.check(candidate)
        free[node] = free[node] - s.resources
        placed = dict(candidate.placements)
    for replicas in placed.values():
        for p in replicas:
            free[p.node_id] = free[p.node_id] + p.resources
    assert free == {n.id: n.capacity for n in cluster}
