"""The scheduling pass on a real store: the incremental pass of non-preemptive policies places exactly
what the full pass would (capacity left by running CPU jobs, named GPU devices), and preemptive ones keep
the full pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyline.cluster.agent_executor import AgentExecutor
from skyline.cluster.clock import WallClock
from skyline.cluster.control import ControlConfig, ControlPlane
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import Resources, Tier
from skyline.scheduling.policies import make_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'cluster.db'}")
    yield opened
    opened.close()


def _control(store: Store, policy: str) -> ControlPlane:
    return ControlPlane(store, AgentExecutor(store), make_policy(policy), WallClock(), ControlConfig())


def _node(store: Store, name: str, *, cpus: float, gpus: int = 0) -> None:
    capacity = Resources.of(cpus=cpus, memory_mib=8192, gpus=gpus)
    store.nodes.register(name, tier=Tier.DATACENTER, address="127.0.0.1", capacity=capacity, labels={})


def _submit(store: Store, *, cpus: float, gpus: float = 0) -> str:
    request = JobRequest(command="true", resources=Resources.of(cpus=cpus, memory_mib=256, gpus=gpus))
    return store.jobs.submit(request, owner="alice")[0].id


def test_running_cpu_jobs_shrink_the_capacity_a_later_pass_sees(store: Store) -> None:
    _node(store, "n1", cpus=4)
    control = _control(store, "fifo-backfill")
    assert control.incremental
    first = [_submit(store, cpus=1) for _ in range(3)]
    control.run_once()
    assert all(store.jobs.get(j).status == "placed" for j in first)
    too_big, fits = _submit(store, cpus=2), _submit(store, cpus=1)
    control.run_once()  # 3 of 4 CPUs are taken: only the 1-CPU job fits
    assert store.jobs.get(too_big).status == "pending"
    assert store.jobs.get(fits).status == "placed"
    store.jobs.cancel(first[0])
    store.jobs.cancel(first[1])
    control.run_once()  # two CPUs freed
    assert store.jobs.get(too_big).status == "placed"


def test_a_pending_gpu_job_gets_a_device_no_running_job_holds(store: Store) -> None:
    _node(store, "g1", cpus=8, gpus=2)
    control = _control(store, "fifo")
    held = _submit(store, cpus=1, gpus=1)
    control.run_once()
    second = _submit(store, cpus=1, gpus=1)
    third = _submit(store, cpus=1, gpus=1)
    control.run_once()
    devices = {store.jobs.replicas(j, 0)[0].gpu_indices for j in (held, second)}
    assert devices == {(0,), (1,)}
    assert store.jobs.get(third).status == "pending"  # both devices are taken


def test_a_preemptive_policy_keeps_the_full_pass(store: Store) -> None:
    _node(store, "n1", cpus=2)
    control = _control(store, "srtf")
    assert not control.incremental
    job = _submit(store, cpus=1)
    control.run_once()
    assert store.jobs.get(job).status == "placed"
