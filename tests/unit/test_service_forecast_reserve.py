"""`forecast-reserve` by hand: batch work stays out of the capacity services are forecast to need, and a
service replica that finds no room preempts batch work (the forecast was wrong)."""

from __future__ import annotations

import pytest

from skyline.core import (
    Allocation,
    Cluster,
    ClusterState,
    DemandForecast,
    Job,
    JobKind,
    JobSpec,
    JobStatus,
    Node,
    Placement,
    Resources,
)
from skyline.errors import ConfigError
from skyline.scheduling.policies import POLICIES, ReserveOptions, make_policy

pytestmark = pytest.mark.unit
CPU = Resources.of(cpus=1, memory_mib=100)


def _job(job_id: str, *, service: str = "", submit_s: float = 0.0, running: bool = False) -> Job:
    spec = JobSpec(
        id=job_id, resources=CPU, kind=JobKind.SERVICE if service else JobKind.BATCH, submit_time_s=submit_s,
        labels={"service": service} if service else {},
    )  # fmt: skip
    return Job(spec=spec, status=JobStatus.RUNNING if running else JobStatus.PENDING)


def _state(jobs: list[Job], *, peak: float | None = None) -> ClusterState:
    cluster = Cluster([Node(id="n1", capacity=Resources.of(cpus=4, memory_mib=8192))])
    running = {j.id: (Placement(node_id="n1", resources=CPU),) for j in jobs if j.status is JobStatus.RUNNING}
    forecasts = {}
    if peak is not None:  # replicas the service is forecast to need over the next two steps (P90)
        forecasts["service:svc"] = DemandForecast(
            series="service:svc",
            start_s=0.0,
            step_s=10.0,
            point=(peak - 1, peak - 1),
            quantiles={0.9: (peak - 1, peak)},
        )
    return ClusterState(
        now_s=100.0, cluster=cluster, jobs=tuple(jobs), running=Allocation(running), forecasts=forecasts
    )


def test_batch_jobs_leave_the_forecast_capacity_free() -> None:
    policy = make_policy("forecast-reserve")
    jobs = [_job("svc-1", service="svc", running=True)] + [_job(f"b{i}", submit_s=i) for i in range(3)]
    # No forecast: the three batch jobs fill the three free CPUs.
    assert set(policy.allocate(_state(jobs)).placements) == {"svc-1", "b0", "b1", "b2"}
    # Forecast P90 peak of 3 replicas, 1 running: 2 CPUs stay free, one batch job runs.
    assert set(policy.allocate(_state(jobs, peak=3.0)).placements) == {"svc-1", "b0"}
    # The point forecast (quantile absent from options) is lower: 2 replicas, so 1 CPU reserved.
    point = make_policy("forecast-reserve", ReserveOptions(quantile=0.5))
    assert set(point.allocate(_state(jobs, peak=3.0)).placements) == {"svc-1", "b0", "b1"}


def test_a_waiting_replica_of_the_service_is_not_held_back_by_its_own_reserve() -> None:
    policy = make_policy("forecast-reserve")
    jobs = [_job("svc-1", service="svc", running=True), _job("svc-2", service="svc", submit_s=5.0)]
    jobs += [_job(f"b{i}", submit_s=i) for i in range(3)]
    placed = set(policy.allocate(_state(jobs, peak=3.0)).placements)
    # svc-2 takes a CPU; the reserve is then 3 - 2 = 1 more replica: one batch job fits beside it.
    assert placed == {"svc-1", "svc-2", "b0"}


def test_a_replica_that_finds_no_room_preempts_the_least_served_batch_job() -> None:
    policy = make_policy("forecast-reserve")
    jobs = [_job("svc-1", service="svc", running=True)]
    jobs += [_job(f"b{i}", submit_s=i, running=True) for i in range(3)]
    jobs.append(_job("svc-2", service="svc", submit_s=10.0))
    allocation = policy.allocate(_state(jobs))
    # The cluster is full: one batch job (the newest: least service received) makes way, the others stay.
    assert set(allocation.placements) == {"svc-1", "svc-2", "b0", "b1"}
    # Running batch jobs are not preempted for a forecast alone, only for a replica that waits.
    idle = [j for j in jobs if j.id != "svc-2"]
    assert set(policy.allocate(_state(idle, peak=4.0)).placements) == {"svc-1", "b0", "b1", "b2"}


def test_registered_with_typed_options() -> None:
    assert POLICIES["forecast-reserve"].Options is ReserveOptions
    with pytest.raises(ConfigError):
        ReserveOptions(quantile=1.5)
