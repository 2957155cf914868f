"""The edge's durable queue: FIFO, ack, capacity (drop-oldest / reject-new), TTL, full disk, reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.edge.ingest import IngestStore
from skyline.edge.uplink_store import UplinkPolicy, UplinkStore
from skyline.errors import CapacityError, ConfigError, OverloadedError

pytestmark = pytest.mark.unit


def test_fifo_peek_ack_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with UplinkStore(path) as store:
        ids = [store.put("sample", {"i": i}) for i in range(5)]
        batch = store.peek(3)
        assert [r.id for r in batch] == ids[:3]
        assert [r.payload for r in batch] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert store.ack([ids[0], ids[1], "unknown"]) == 2
    with UplinkStore(path) as reopened:  # durable: the unacked rest is still there, attempts remembered
        rest = reopened.peek(10)
        assert [r.id for r in rest] == ids[2:]
        assert rest[0].attempts == 2
        assert reopened.counters()["acked"] == 2
        assert reopened.integrity_ok()


def test_drop_oldest_counts_drops(tmp_path: Path) -> None:
    with UplinkStore(tmp_path / "q.db", UplinkPolicy(capacity_records=3, overflow="drop-oldest")) as store:
        ids = [store.put("sample", {"i": i}) for i in range(5)]
        assert [r.id for r in store.peek(10)] == ids[2:]
        assert store.counters()["dropped_oldest"] == 2


def test_reject_new_refuses_and_counts(tmp_path: Path) -> None:
    with UplinkStore(tmp_path / "q.db", UplinkPolicy(capacity_records=2, overflow="reject-new")) as store:
        ids = [store.put("sample", {"i": i}) for i in range(2)]
        with pytest.raises(OverloadedError, match="full"):
            store.put("sample", {"i": 2})
        assert [r.id for r in store.peek(10)] == ids
        assert store.counters()["rejected_new"] == 1


def test_ttl_expires_old_records(tmp_path: Path) -> None:
    now = [1000.0]
    with UplinkStore(tmp_path / "q.db", UplinkPolicy(ttl_s=10.0), clock=lambda: now[0]) as store:
        store.put("sample", {"i": 0})
        now[0] += 6
        young = store.put("sample", {"i": 1})
        now[0] += 6  # the first is 12 s old now, the second 6 s
        assert [r.id for r in store.peek(10)] == [young]
        assert store.counters()["expired"] == 1


def test_full_disk_leaves_store_consistent(tmp_path: Path) -> None:
    with UplinkStore(tmp_path / "q.db", max_pages=8) as store:
        stored, error = 0, None
        for i in range(10_000):
            try:
                store.put("sample", {"i": i, "pad": "x" * 500})
            except CapacityError as exc:
                error = exc
                break
            stored += 1
        assert error is not None and "out of disk space" in str(error)
        assert stored > 0
        assert len(store) == stored
        assert store.integrity_ok()
        store.ack([r.id for r in store.peek(stored)])  # draining frees pages: the queue works again
        store.put("sample", {"after": True})
        assert len(store) == 1


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="capacity_records"):
        UplinkPolicy(capacity_records=0)
    with pytest.raises(ConfigError, match="overflow"):
        UplinkPolicy(overflow="drop-newest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ttl_s"):
        UplinkPolicy(ttl_s=0)


def test_ingest_drops_duplicates(tmp_path: Path) -> None:
    ingest = IngestStore(tmp_path / "cloud.db")
    record = {"id": "a", "kind": "sample", "payload": {"x": 1}, "created_at": 1.0}
    first = ingest.ingest([record, {**record, "id": "b"}])
    again = ingest.ingest([record, record])
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert ingest.ids() in (["a", "b"], ["b", "a"])
    assert ingest.counters() == {"accepted": 2, "duplicates": 2}
    ingest.close()
