"""The contract every executor keeps: one suite, run against every member of the family.

``local`` and ``ray`` run real replicas (processes under real node agents, Ray tasks) over a real store;
``sim`` is the simulator's executor on a simulated clock. The test plays the scheduler (see
`skyline.testing.executors`). The port-level tests run on all three; the ones about what only a control
plane has (log lines, rendezvous ports, cancellation, Ray's placement groups) on the store-backed ones.
One harness per backend and module keeps it fast.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyline.cluster.spec import JobRequest
from skyline.core import JobStatus, Resources
from skyline.testing.cluster import wait_until
from skyline.testing.executors import (
    HARNESSES,
    MASTER_PORTS,
    NODES,
    ExecutorHarness,
    SimHarness,
    pidfile_command,
    pids_written,
    process_alive,
)

pytestmark = [
    pytest.mark.integration,
    # Ray's node launcher leaves /dev/null handles for the garbage collector (Ray's code, not ours).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
ACTIVE = (JobStatus.PLACED, JobStatus.RUNNING)


@pytest.fixture(scope="module", params=sorted(HARNESSES))
def member(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExecutorHarness | SimHarness]:
    if request.param == "ray":
        pytest.importorskip("ray")
    with HARNESSES[request.param](tmp_path_factory.mktemp(f"executor-{request.param}")) as h:
        yield h


@pytest.fixture
def harness(member: ExecutorHarness | SimHarness) -> ExecutorHarness:
    """A store-backed member (the simulator's executor runs no commands and has no store)."""
    if not isinstance(member, ExecutorHarness):
        pytest.skip(f"{member.name}: the simulated executor runs no commands and keeps no store")
    return member


# ---------------------------------------------------------------------- every member
def test_a_started_gang_runs_then_succeeds_once(member: ExecutorHarness | SimHarness) -> None:
    spec = member.job(seconds=1.0)
    member.start_job(spec)
    assert member.wait_job(spec.id, JobStatus.SUCCEEDED, JobStatus.FAILED) is JobStatus.SUCCEEDED
    assert member.history(spec.id) == ["running", "succeeded"]


def test_a_stopped_job_goes_back_to_pending_and_never_succeeds(member: ExecutorHarness | SimHarness) -> None:
    spec = member.job(seconds=30.0)
    member.start_job(spec)
    assert member.wait_job(spec.id, JobStatus.RUNNING) is JobStatus.RUNNING
    member.stop(spec.id)
    member.advance(2.0 if member.name != "sim" else 60.0)  # the sim: well past its end
    assert member.history(spec.id) == ["running", "pending"]


# ---------------------------------------------------------------------- the control plane's members
def _replica_pids(harness: ExecutorHarness, folder: Path, job_id: str) -> list[int]:
    """The two replicas' pids, once both run (pumping: Ray launches a gang once its group is ready)."""

    def both() -> list[int]:
        harness.pump()
        pids = pids_written(folder, job_id)
        return pids if len(pids) == 2 else []

    return list(wait_until(both))


def test_start_records_the_gang_where_the_policy_placed_it(harness: ExecutorHarness) -> None:
    record = harness.submit("true")
    harness.start(record, NODES)
    placed = harness.store.jobs.get(record.id)
    assert placed.status in (*ACTIVE, JobStatus.SUCCEEDED)
    assert [r.node_id for r in harness.store.jobs.replicas(record.id, placed.attempt)] == list(NODES)
    assert placed.master_port == MASTER_PORTS.pick(record.id, placed.attempt)
    harness.wait_status(record.id, JobStatus.SUCCEEDED)


def test_a_gang_runs_with_torch_environment_and_its_output_reaches_the_store(
    harness: ExecutorHarness,
) -> None:
    record = harness.submit('echo "rank $RANK of $WORLD_SIZE port $MASTER_PORT"')
    harness.start(record, NODES)
    done = harness.wait_status(record.id, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert done.status is JobStatus.SUCCEEDED and done.exit_code == 0
    port = MASTER_PORTS.pick(record.id, done.attempt)
    expected = [f"rank {rank} of 2 port {port}" for rank in range(2)]
    wait_until(lambda: sorted(harness.log_lines(record.id)) == expected, timeout_s=10)


def test_a_failing_replica_fails_the_gang_with_its_exit_code(harness: ExecutorHarness) -> None:
    record = harness.submit('if [ "$RANK" = 1 ]; then echo broken; exit 3; fi; sleep 30')
    harness.start(record, NODES)
    failed = harness.wait_status(record.id, JobStatus.FAILED, JobStatus.SUCCEEDED)
    assert failed.status is JobStatus.FAILED and failed.exit_code == 3
    wait_until(lambda: "broken" in harness.log_lines(record.id), timeout_s=10)


def test_release_stops_every_replica_of_a_cancelled_gang(harness: ExecutorHarness, tmp_path: Path) -> None:
    record = harness.submit(pidfile_command(tmp_path))
    harness.start(record, NODES)
    pids = _replica_pids(harness, tmp_path, record.id)
    assert all(process_alive(pid) for pid in pids)
    harness.store.jobs.cancel(record.id)
    harness.executor.release(record.id)
    wait_until(lambda: not any(process_alive(pid) for pid in pids), timeout_s=20)
    assert harness.store.jobs.get(record.id).status is JobStatus.CANCELLED


def test_stop_requeues_the_job_and_ends_its_replicas(harness: ExecutorHarness, tmp_path: Path) -> None:
    record = harness.submit(pidfile_command(tmp_path))
    harness.start(record, NODES)
    pids = _replica_pids(harness, tmp_path, record.id)
    harness.executor.stop(record.id)  # preemption
    requeued = harness.store.jobs.get(record.id)
    assert requeued.status is JobStatus.PENDING and requeued.attempt == record.attempt + 1
    wait_until(lambda: not any(process_alive(pid) for pid in pids), timeout_s=20)
    # The next attempt gets its own rendezvous port.
    assert MASTER_PORTS.pick(record.id, 1) != MASTER_PORTS.pick(record.id, 0)
    harness.store.jobs.cancel(record.id)


def test_rank_zero_refuses_a_master_port_taken_on_its_node(harness: ExecutorHarness) -> None:
    record = harness.submit("echo started")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("", MASTER_PORTS.pick(record.id, 0)))
        squatter.listen()
        harness.start(record, NODES)
        failed = harness.wait_status(record.id, JobStatus.FAILED, JobStatus.SUCCEEDED)
    assert failed.status is JobStatus.FAILED and failed.exit_code == 98
    lines = wait_until(lambda: harness.log_lines(record.id, rank=0), timeout_s=10)
    assert len(lines) == 1 and "MASTER_PORT" in lines[0] and "in use" in lines[0]  # its command never ran


def test_a_ray_placement_group_not_ready_in_time_goes_back_to_pending_with_the_reason(
    harness: ExecutorHarness,
) -> None:
    if harness.name != "ray":
        pytest.skip("Ray's placement groups only")
    record, _ = harness.store.jobs.submit(
        JobRequest(command="true", resources=Resources.of(cpus=0.5, gpus=1)), owner="contract"
    )  # the Ray node has no GPU: the group can never be placed
    harness.executor.ready_timeout_s = 1.0  # type: ignore[attr-defined]
    harness.start(record, NODES[:1])
    requeued = harness.wait_status(record.id, JobStatus.PENDING, timeout_s=20)
    assert requeued.restarts == 1 and "did not place the gang" in requeued.message
    assert harness.history(record.id) == ["pending"]  # it never ran
    harness.store.jobs.cancel(record.id)


def test_ray_nodes_report_their_measured_utilization(harness: ExecutorHarness) -> None:
    if harness.name != "ray":
        pytest.skip("agents' samples are covered by the API tests")
    samples = wait_until(lambda: (harness.pump(), harness.store.nodes.metrics(NODES[0]))[1], timeout_s=20)
    assert samples[-1]["memory_percent"] > 0  # measured on the node, not a placeholder 0


def test_close_is_idempotent(member: ExecutorHarness | SimHarness) -> None:
    if isinstance(member, ExecutorHarness):
        member.executor.close()
        member.executor.close()
