"""The control plane's store on SQLite and on a throwaway PostgreSQL: life cycle, gangs, restarts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.node_store import UsageSample
from skyline.cluster.records import ReplicaReport
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import JobEvent, JobStatus, Placement, Resources, Tier
from skyline.errors import ConflictError, NotFoundError
from skyline.testing.postgres import postgres_binaries, throwaway_postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the PostgreSQL suite must run, but initdb/pg_ctl are not installed")
        pytest.skip("PostgreSQL server binaries are not installed (make setup installs them)")
    with throwaway_postgres(binaries) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cluster.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:  # a clean schema for every test
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    opened = Store(url)
    yield opened
    opened.close()


def _node(store: Store, name: str, cpus: float = 4) -> None:
    store.nodes.register(
        name,
        tier=Tier.DATACENTER,
        address="127.0.0.1",
        capacity=Resources.of(cpus=cpus, memory_mib=4096),
        labels={},
    )


def _gang(store: Store, replicas: int = 2) -> str:
    record, _ = store.jobs.submit(JobRequest(command="true", replicas=replicas), owner="alice")
    placements = [Placement(node_id="n1", resources=record.resources) for _ in range(replicas)]
    assert store.jobs.place(record.id, placements, master_port=29500)
    return record.id


def test_an_idempotency_key_returns_the_first_job(store: Store) -> None:
    first, created = store.jobs.submit(JobRequest(command="echo 1", idempotency_key="k-1"), owner="alice")
    again, created_again = store.jobs.submit(
        JobRequest(command="echo 1", idempotency_key="k-1"), owner="alice"
    )
    assert created and not created_again and again.id == first.id
    assert len(store.jobs.find()) == 1


def test_a_group_commit_queues_in_order_with_one_job_per_key(store: Store) -> None:
    first, _ = store.jobs.submit(JobRequest(command="echo 0", idempotency_key="k-0"), owner="alice")
    requests = [
        JobRequest(command="echo 1", idempotency_key="k-1"),
        JobRequest(command="echo 2"),
        JobRequest(command="echo 1", idempotency_key="k-1"),  # the same key twice in one batch
        JobRequest(command="echo 0", idempotency_key="k-0"),  # a key stored before
        JobRequest(command="echo 3", idempotency_key="k-3"),
    ]
    answers = store.jobs.submit_many([(r, "bob") for r in requests])
    assert [created for _, created in answers] == [True, True, False, False, True]
    assert answers[2][0] == answers[0][0] and answers[3][0].id == first.id
    new = [record for record, created in answers if created]
    assert [r.command for r in new] == ["echo 1", "echo 2", "echo 3"]
    assert [store.jobs.get(r.id) for r in new] == new  # each answer is the row as stored (seq included)
    assert [r.seq for r in new] == sorted(r.seq for r in new) and new[0].seq > first.seq
    events = sa.select(t.job_events.c.job_id).where(t.job_events.c.status == "pending")
    with store.db.read() as conn:
        assert [row[0] for row in conn.execute(events.order_by(t.job_events.c.id))] == [
            first.id,
            *(r.id for r in new),
        ]


def test_a_gang_runs_when_all_replicas_run_and_succeeds_when_all_succeed(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store)
    assert store.jobs.get(job_id).status is JobStatus.PLACED
    assert store.jobs.report_replica(job_id, 0, 0, "running") is None  # one of two: still placed
    event = store.jobs.report_replica(job_id, 0, 1, "running")
    assert event is not None and event.status is JobStatus.RUNNING
    store.jobs.report_replica(job_id, 0, 0, "succeeded", exit_code=0)
    assert store.jobs.get(job_id).status is JobStatus.RUNNING
    store.jobs.report_replica(job_id, 0, 1, "succeeded", exit_code=0)
    assert store.jobs.get(job_id).status is JobStatus.SUCCEEDED


def test_a_batch_of_reports_applies_in_order_and_refuses_only_foreign_replicas(store: Store) -> None:
    _node(store, "n1")
    _node(store, "n2")
    job_id = _gang(store)  # both replicas on n1
    reports = [
        ReplicaReport(job_id=job_id, attempt=0, rank=0, status="running"),
        ReplicaReport(job_id=job_id, attempt=0, rank=1, status="running"),
        ReplicaReport(job_id="j-nope", attempt=0, rank=0, status="running"),
        ReplicaReport(job_id=job_id, attempt=0, rank=0, status="succeeded", exit_code=0),
        ReplicaReport(job_id=job_id, attempt=0, rank=1, status="succeeded", exit_code=0),
    ]
    outcomes = store.jobs.report_replicas("n1", reports)
    assert outcomes[0] is None and isinstance(outcomes[2], NotFoundError) and outcomes[3] is None
    assert [o.status for o in outcomes if isinstance(o, JobEvent)] == [JobStatus.RUNNING, JobStatus.SUCCEEDED]
    assert store.jobs.get(job_id).status is JobStatus.SUCCEEDED
    # Another node cannot report on n1's replicas, and a refused report changes nothing.
    other = _gang(store, replicas=1)
    refused = store.jobs.report_replicas(
        "n2", [ReplicaReport(job_id=other, attempt=0, rank=0, status="failed")]
    )
    assert isinstance(refused[0], NotFoundError) and "on node n2" in str(refused[0])
    assert store.jobs.get(other).status is JobStatus.PLACED


def test_one_failed_replica_fails_the_gang_with_its_code_and_last_lines(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store)
    store.logs.append(job_id, 0, 1, ["loading", "Traceback: boom"])
    store.jobs.report_replica(job_id, 0, 1, "failed", exit_code=3)
    job = store.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.exit_code == 3
    assert "boom" in job.message
    assert [r.status for r in store.jobs.replicas(job_id)] == ["stopping", "failed"]
    assert store.nodes.assignments("n1") == []


def test_a_requeued_job_gets_a_new_attempt_and_ignores_late_reports(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store, replicas=1)
    assert store.jobs.requeue(job_id, "node n1 lost")
    job = store.jobs.get(job_id)
    assert job.status is JobStatus.PENDING and job.attempt == 1 and job.restarts == 1
    assert store.jobs.report_replica(job_id, 0, 0, "failed", exit_code=137) is None  # from the lost attempt
    assert store.jobs.get(job_id).status is JobStatus.PENDING


def test_cancel_stops_replicas_and_a_finished_job_cannot_be_cancelled(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store, replicas=1)
    assert len(store.nodes.assignments("n1")) == 1
    assert store.jobs.cancel(job_id).status is JobStatus.CANCELLED
    assert store.nodes.assignments("n1") == []
    with pytest.raises(ConflictError):
        store.jobs.cancel(job_id)
    with pytest.raises(NotFoundError):
        store.jobs.cancel("j-none")


def test_assignments_carry_the_torch_distributed_environment(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store, replicas=2)
    env = {a.rank: a.env for a in store.nodes.assignments("n1")}
    assert env[1]["RANK"] == "1" and env[1]["WORLD_SIZE"] == "2"
    assert env[0]["MASTER_ADDR"] == "127.0.0.1" and env[0]["MASTER_PORT"] == "29500"
    assert env[0]["SKYLINE_JOB_ID"] == job_id


def test_silent_nodes_are_lost_and_heartbeats_keep_a_history(store: Store) -> None:
    _node(store, "n1")
    _node(store, "n2")
    assert store.nodes.heartbeat("n1", UsageSample(cpu_percent=12.5, memory_percent=40.0, running_replicas=1))
    store.db.now = lambda: 1e12  # far in the future: every node has been silent for ages
    assert sorted(store.nodes.mark_lost(silent_for_s=5)) == ["n1", "n2"]
    assert not store.nodes.heartbeat(
        "n1", UsageSample(cpu_percent=1, memory_percent=1)
    )  # must register again
    history = store.nodes.metrics("n1")
    assert [h["cpu_percent"] for h in history] == [12.5]


def test_applying_an_event_twice_changes_nothing_the_second_time(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store, replicas=1)
    done = JobEvent(job_id=job_id, status=JobStatus.SUCCEEDED, at_s=1.0, exit_code=0)
    assert store.jobs.apply_event(done)
    assert not store.jobs.apply_event(done)
    assert store.jobs.get(job_id).status is JobStatus.SUCCEEDED


def test_state_survives_reopening_and_migrations_are_idempotent(store: Store) -> None:
    _node(store, "n1")
    job_id = _gang(store, replicas=1)
    store.close()
    reopened = Store(store.url)
    try:
        assert reopened.jobs.get(job_id).status is JobStatus.PLACED
        assert [n.id for n in reopened.nodes.find()] == ["n1"]
    finally:
        reopened.close()


def test_the_control_plane_runs_a_job_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    import threading

    from skyline.cluster.agent import AgentConfig, NodeAgent
    from skyline.cluster.client import ClusterClient
    from skyline.cluster.control import ControlConfig
    from skyline.cluster.server import ServerConfig, ServerThread

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    config = ServerConfig(state_dir=tmp_path, db_url=postgres_url, port=0, control=ControlConfig(tick_s=0.2))
    with ServerThread(config) as server:
        authority = server.built.authority
        agent = NodeAgent(
            ClusterClient(server.url, authority.issue("agent-pg", "agent")),
            AgentConfig(name="pg-node", heartbeat_s=0.2, cpus=2, memory_mib=2048),
        )
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        try:
            with ClusterClient(server.url, authority.bootstrap_admin() or "") as admin:
                job = admin.submit({"command": "echo from postgres", "replicas": 2, "cpus": 0.5})
                done = admin.wait(job["id"], timeout_s=60)
                assert done["status"] == "succeeded"
                assert [ln["line"] for ln in admin.logs(job["id"])["lines"]] == ["from postgres"] * 2
        finally:
            agent.stop()
            thread.join(timeout=30)
            agent.client.close()
