"""The contract every control-plane executor keeps: one suite, run against every backend.

Each backend runs real replicas (processes under real node agents, or Ray tasks); the test plays the
control plane (see `skyline.testing.executors`). One harness per backend and module keeps it fast.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyline.core import JobStatus
from skyline.testing.cluster import wait_until
from skyline.testing.executors import (
    HARNESSES,
    MASTER_PORTS,
    NODES,
    ExecutorHarness,
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
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExecutorHarness]:
    if request.param == "ray":
        pytest.importorskip("ray")
    with HARNESSES[request.param](tmp_path_factory.mktemp(f"executor-{request.param}")) as h:
        yield h


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
    pids = wait_until(
        lambda: len(pids_written(tmp_path, record.id)) == 2 and pids_written(tmp_path, record.id)
    )
    assert all(process_alive(pid) for pid in pids)
    harness.store.jobs.cancel(record.id)
    harness.executor.release(record.id)
    wait_until(lambda: not any(process_alive(pid) for pid in pids), timeout_s=20)
    assert harness.store.jobs.get(record.id).status is JobStatus.CANCELLED


def test_stop_requeues_the_job_and_ends_its_replicas(harness: ExecutorHarness, tmp_path: Path) -> None:
    record = harness.submit(pidfile_command(tmp_path))
    harness.start(record, NODES)
    pids = wait_until(
        lambda: len(pids_written(tmp_path, record.id)) == 2 and pids_written(tmp_path, record.id)
    )
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


def test_close_is_idempotent(harness: ExecutorHarness) -> None:
    harness.executor.close()
    harness.executor.close()
