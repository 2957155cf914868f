"""Gavel-style policies: each job on the GPU model where it is worth most, given who else waits."""

from __future__ import annotations

import pytest

from skyline.core import Cluster, ClusterState, Job, JobSpec, Node, Resources
from skyline.scheduling.policies import make_policy

pytestmark = pytest.mark.unit

# speed on each model relative to the job type's best (Gavel's matrix, two rows of it)
SPEEDS = {"cyclegan": {"v100": 1.0, "k80": 0.11}, "recommendation": {"v100": 0.48, "k80": 0.67}}


def _state(first: str, second: str) -> ClusterState:
    nodes = [
        Node(id="slow", capacity=Resources.of(gpus=1, gpu_type="k80")),
        Node(id="fast", capacity=Resources.of(gpus=1, gpu_type="v100")),
    ]
    jobs = [
        Job(spec=JobSpec(id=job_type, resources=Resources.of(gpus=1), submit_time_s=k, job_type=job_type))
        for k, job_type in enumerate((first, second))
    ]
    return ClusterState(now_s=10, cluster=Cluster(nodes), jobs=tuple(jobs), throughput=SPEEDS)


@pytest.mark.parametrize("order", [("cyclegan", "recommendation"), ("recommendation", "cyclegan")])
@pytest.mark.parametrize("name", ["gavel-max-min", "gavel-throughput"])
def test_each_job_goes_where_its_speed_is_relatively_best(name: str, order: tuple[str, str]) -> None:
    allocation = make_policy(name).allocate(_state(*order))
    placed = {job: allocation.placements[job][0].node_id for job in order}
    assert placed == {"cyclegan": "fast", "recommendation": "slow"}  # whoever came first


def test_a_blind_policy_takes_the_models_in_node_order() -> None:
    allocation = make_policy("fifo-backfill").allocate(_state("cyclegan", "recommendation"))
    assert allocation.placements["cyclegan"][0].node_id == "slow"  # listed first: 9x slower for it
