"""The console's own queries against a real SQLite store: keyset paging and filters, timelines, counts."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from skyline.cluster.console import queries
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import Placement, Resources, Tier

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'cluster.db'}")
    store.nodes.register(
        "dc-1",
        tier=Tier.DATACENTER,
        address="127.0.0.1",
        capacity=Resources.of(cpus=64, memory_mib=65536),
        labels={},
    )
    store.nodes.register(
        "edge-1",
        tier=Tier.EDGE,
        address="127.0.0.1",
        capacity=Resources.of(cpus=4, memory_mib=4096),
        labels={},
    )
    return store


def _submit(store: Store, n: int) -> list[str]:
    """``n`` jobs by three owners; every third asks for the edge tier."""
    owners = itertools.cycle(["ann", "bob", "cy"])
    ids = []
    for i in range(n):
        tiers = frozenset({Tier.EDGE}) if i % 3 == 2 else frozenset()
        record, _ = store.jobs.submit(
            JobRequest(command="true", name=f"j{i}", tiers=tiers), owner=next(owners)
        )
        ids.append(record.id)
    return ids


def _walk(store: Store, query: queries.JobFilter) -> list[str]:
    """Every row of every page, following the ``older`` cursor from the first page."""
    seen: list[str] = []
    while True:
        with store.db.read() as conn:
            page = queries.job_page(conn, query)
        seen += [r["id"] for r in page.rows]
        if page.older is None:
            return seen
        query = dataclasses.replace(query, before=page.older)


def test_pages_cover_every_matching_job_once_newest_first(store: Store) -> None:
    ids = _submit(store, 23)
    assert _walk(store, queries.JobFilter(limit=5)) == ids[::-1]
    bob = [i for k, i in enumerate(ids) if k % 3 == 1]
    assert _walk(store, queries.JobFilter(owner="bob", limit=4)) == bob[::-1]
    with store.db.read() as conn:
        first = queries.job_page(conn, queries.JobFilter(owner="bob", limit=4))
        second = queries.job_page(conn, queries.JobFilter(owner="bob", limit=4, before=first.older))
        back = queries.job_page(conn, queries.JobFilter(owner="bob", limit=4, after=second.newer))
    assert (first.total, first.newer, second.newer is not None) == (len(bob), None, True)
    assert [r["id"] for r in back.rows] == [r["id"] for r in first.rows]


def test_status_and_tier_filters(store: Store) -> None:
    ids = _submit(store, 9)
    store.jobs.place_many(
        [(ids[0], (Placement(node_id="edge-1", resources=Resources.of(cpus=1)),))],
        master_port=lambda *_: 29500,
    )
    store.jobs.cancel(ids[1])
    with store.db.read() as conn:
        placed = queries.job_page(conn, queries.JobFilter(status="placed"))
        edge = queries.job_page(conn, queries.JobFilter(tier="edge"))
        counts = queries.job_counts(conn)
    assert [r["id"] for r in placed.rows] == [ids[0]] and placed.rows[0]["nodes"] == ["edge-1"]
    # asked for the edge tier (every third) or ran there (ids[0])
    assert sorted(r["id"] for r in edge.rows) == sorted([ids[0], ids[2], ids[5], ids[8]])
    assert counts == {"pending": 7, "placed": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 1}


def test_timeline_records_each_transition_in_order(store: Store) -> None:
    (job_id,) = _submit(store, 1)
    store.jobs.place_many(
        [(job_id, (Placement(node_id="dc-1", resources=Resources.of(cpus=1)),))], master_port=lambda *_: 29500
    )
    store.jobs.requeue(job_id, "its node was lost")
    store.jobs.cancel(job_id)
    with store.db.read() as conn:
        steps = queries.timeline(conn, job_id)
    assert [(s["status"], s["attempt"]) for s in steps] == [
        ("pending", 0),
        ("placed", 0),
        ("pending", 1),
        ("cancelled", 1),
    ]
    assert steps[2]["message"] == "its node was lost"
    assert all(s["lasted_s"] >= 0 for s in steps[:-1]) and "lasted_s" not in steps[-1]


def test_tier_history_averages_each_tier_per_bucket(store: Store) -> None:
    from skyline.cluster.node_store import UsageSample

    for cpu in (10.0, 30.0):
        store.nodes.heartbeat("dc-1", UsageSample(cpu_percent=cpu, memory_percent=50.0))
    store.nodes.heartbeat("edge-1", UsageSample(cpu_percent=90.0, memory_percent=20.0, gpu_percent=5.0))
    with store.db.read() as conn:
        history = queries.tier_history(conn, since_s=0.0, bucket_s=1e9)
        latest = queries.latest_samples(conn, ["dc-1", "edge-1", "nowhere"])
    assert [round(h["cpu_percent"]) for h in history["datacenter"]] == [20]
    assert history["edge"][0]["gpu_percent"] == 5.0
    assert latest["dc-1"]["cpu_percent"] == 30.0 and "nowhere" not in latest
