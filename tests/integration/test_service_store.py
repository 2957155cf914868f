"""`ServiceStore` on a real SQLite database: services, replicas joined to their jobs, history, decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.cluster.service_spec import service_from_mapping
from skyline.cluster.service_telemetry import TelemetryWindow
from skyline.cluster.store import Store
from skyline.core import Placement, Resources, Tier
from skyline.errors import ConfigError, ConflictError, NotFoundError

pytestmark = pytest.mark.integration

SPEC = {"name": "mlp", "command": "serve --port $PORT", "replicas": 2, "min_replicas": 1, "max_replicas": 4}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield store
    store.close()


def test_create_get_update_and_the_name_is_unique(store: Store) -> None:
    record = store.services.create(service_from_mapping(SPEC), owner="alice")
    assert (record.generation, record.desired, record.status, record.owner) == (1, 2, "active", "alice")
    with pytest.raises(ConflictError):
        store.services.create(service_from_mapping(SPEC), owner="bob")
    changed = service_from_mapping(SPEC | {"model": "mlp:2", "max_replicas": 3})
    rolled = store.services.update("mlp", changed, roll=True)
    assert rolled.generation == 2 and rolled.spec.model == "mlp:2"
    same = store.services.update("mlp", changed, roll=False)
    assert same.generation == 2
    with pytest.raises(NotFoundError):
        store.services.get("nope")


def test_replicas_join_their_jobs_and_nodes(store: Store) -> None:
    record = store.services.create(service_from_mapping(SPEC), owner="alice")
    spec = record.spec
    store.nodes.register(
        "n1", tier=Tier.DATACENTER, address="10.0.0.7", capacity=Resources.of(cpus=4), labels={}
    )
    job, _ = store.jobs.submit(spec.replica_request(port=30001, generation=1), owner="alice")
    store.services.add_replica(record.id, job.id, generation=1, port=30001)
    assert job.kind == "service" and job.env["PORT"] == "30001" and job.env["SKYLINE_SERVICE"] == "mlp"
    (pending,) = store.services.replicas(record.id)
    assert (pending.job_status, pending.node_id, pending.address, pending.state) == (
        "pending",
        None,
        None,
        "starting",
    )
    assert store.jobs.place(
        job.id, [Placement(node_id="n1", resources=spec.replica.resources)], master_port=1
    )
    (placed,) = store.services.replicas()
    assert (placed.job_status, placed.node_id, placed.address) == ("placed", "n1", "10.0.0.7")
    assert store.services.ports_in_use() == {30001}
    store.services.set_replica_state(job.id, "ready")
    store.services.set_replica_state(job.id, "retired")
    assert store.services.replicas() == [] and store.services.ports_in_use() == set()
    assert store.services.startup_times(record.id)[0] >= 0


def test_a_replica_job_without_its_row_is_an_orphan(store: Store) -> None:
    record = store.services.create(service_from_mapping(SPEC), owner="alice")
    kept, _ = store.jobs.submit(record.spec.replica_request(port=30001, generation=1), owner="alice")
    store.services.add_replica(record.id, kept.id, generation=1, port=30001)
    orphan, _ = store.jobs.submit(record.spec.replica_request(port=30002, generation=1), owner="alice")
    assert store.services.orphan_jobs() == [orphan.id]


def test_history_and_decisions_in_order_and_purged_with_the_service(store: Store) -> None:
    record = store.services.create(service_from_mapping(SPEC), owner="alice")
    windows = [
        TelemetryWindow(service="mlp", at_s=t, window_s=1.0, requests=t, p50_ms=2.0) for t in (1, 2, 3)
    ]
    store.services.add_metrics([(record.id, w, 1, 2) for w in windows])
    rows = store.services.metrics(record.id, since_s=1.0)
    assert [(r["at_s"], r["requests"], r["ready_replicas"]) for r in rows] == [(2.0, 2, 1), (3.0, 3, 1)]
    for target in (3, 4):
        store.services.add_decision(
            record.id, at_s=10.0 + target, mode="predictive", observed=5.0, forecast=7.5, predictive=target,
            reactive=2, current=2, target=target, lead_s=4.0, reason="forecast",
        )  # fmt: skip
    assert [d["target"] for d in store.services.decisions(record.id)] == [3, 4]
    assert [d["target"] for d in store.services.decisions(record.id, limit=1)] == [4]
    store.services.prune_metrics(before_s=2.5)
    assert [r["at_s"] for r in store.services.metrics(record.id)] == [3.0]
    store.services.mark_deleting("mlp")
    store.services.purge(record.id)
    assert store.services.find() == [] and store.services.decisions(record.id) == []


def test_an_invalid_spec_is_refused_before_the_store() -> None:
    with pytest.raises(ConfigError, match="min"):
        service_from_mapping(SPEC | {"min_replicas": 3})
    with pytest.raises(ConfigError, match="target-rps"):
        service_from_mapping(SPEC | {"autoscale": {"mode": "predictive"}})
    with pytest.raises(ConfigError, match="unknown service field"):
        service_from_mapping(SPEC | {"replica_count": 3})
