"""Exactly-once uplink over real HTTP through the emulated link: outages, lost acks, SIGKILLed agents."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.edge.cloud import CloudConfig, EdgeCloud
from skyline.edge.cloud_app import edge_authority
from skyline.edge.ingest import IngestStore
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.uplink_sender import SenderConfig, UplinkSender
from skyline.edge.uplink_store import UplinkStore
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[TokenAuthority, str]:
    return edge_authority(tmp_path_factory.mktemp("tokens") / "tokens.json")


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, authority: tuple[TokenAuthority, str]
) -> Iterator[tuple[EdgeCloud, IngestStore]]:
    with _cloud(tmp_path_factory.mktemp("cloud"), authority[0]) as server:
        yield server, server.ingest


def _cloud(folder: Path, authority: TokenAuthority) -> EdgeCloud:
    config = CloudConfig(
        repository=folder / "repo", tokens=folder / "t.json", ingest=folder / "ingest.db", port=0
    )
    return EdgeCloud(config, authority=authority)


def test_uplink_requires_token(
    cloud: tuple[EdgeCloud, IngestStore], authority: tuple[TokenAuthority, str]
) -> None:
    server, _ = cloud
    token = authority[1]
    invoker = authority[0].issue("invoker-1", Role.INVOKER)
    denied = httpx.post(
        server.url + "/v1/uplink", json={"records": []}, headers={"authorization": f"Bearer {invoker}"}
    )
    assert denied.status_code == 403 and "error" in denied.json()  # only edge (and admin) tokens uplink
    too_big = httpx.post(
        server.url + "/v1/uplink",
        content=b"x" * (65 * 1024 * 1024),  # over the inference server's 64 MiB cap
        headers={"authorization": f"Bearer {token}"},
    )
    assert too_big.status_code == 413 and "error" in too_big.json()
    assert httpx.post(server.url + "/v1/uplink", json={"records": []}).status_code == 401
    bad = httpx.post(
        server.url + "/v1/uplink", json={"records": [{"id": 1}]}, headers={"authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 422 and "error" in bad.json()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.sampled_from(["put", "put", "send", "outage", "restore", "lost-ack"]), min_size=4, max_size=25
    )
)
def test_exactly_once_under_outages_and_lost_acks(
    ops: list[str],
    cloud: tuple[EdgeCloud, IngestStore],
    authority: tuple[TokenAuthority, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server, ingest = cloud
    token = authority[1]
    before = set(ingest.ids())
    store = UplinkStore(tmp_path_factory.mktemp("edge") / "q.db")
    produced: list[str] = []
    with LinkProxy(server.port, LinkConditions(latency_ms=1, loss=0.3, rto_ms=20)) as link:
        sender = UplinkSender(
            store, SenderConfig(cloud_url=link.url, token=token, batch_records=3, timeout_s=1.0)
        )
        for op in ops:
            if op == "put":
                produced.append(store.put("sample", {"n": len(produced)}))
            elif op == "send":
                sender.send_once()
            elif op in ("outage", "restore"):
                link.set_outage(op == "outage")
            elif op == "lost-ack" and len(store):
                # The cloud gets the batch but the edge dies before acking it: the records stay queued.
                batch = store.peek(3)
                httpx.post(
                    server.url + "/v1/uplink",
                    json={"records": [r.to_wire() for r in batch]},
                    headers={"authorization": f"Bearer {token}"},
                )
        link.set_outage(False)
        assert sender.drain(deadline_s=20.0)
        sender.close()
    delivered = [i for i in ingest.ids() if i not in before]
    assert sorted(delivered) == sorted(produced)  # every record once: none lost, none duplicated
    store.close()


def _spawn(store: Path, url: str, token: str, records: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "skyline.edge.uplink_worker",
        "--store",
        str(store),
        "--cloud",
        url,
        "--token",
        token,
        "--records",
        str(records),
    ]
    with (store.parent / "worker.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=log, stderr=log)


@pytest.mark.slow
def test_sigkilled_agent_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    records, rng = 300, random.Random(7)
    authority, token = edge_authority(tmp_path / "tokens.json")
    with (
        _cloud(tmp_path / "cloud", authority) as server,
        LinkProxy(server.port, LinkConditions(latency_ms=2, bandwidth_mbps=20)) as link,
    ):
        ingest = server.ingest
        kills = 0
        for round_index in range(12):
            worker = _spawn(tmp_path / "edge.db", link.url, token, records)
            if round_index % 3 == 1:
                link.set_outage(True)  # the cloud is away while the agent runs and dies
            try:
                worker.wait(timeout=rng.uniform(0.4, 1.2))
            except subprocess.TimeoutExpired:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
            link.set_outage(False)
            if worker.returncode == 0:
                break
        else:
            worker = _spawn(tmp_path / "edge.db", link.url, token, records)
            assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
        assert sorted(ingest.ids()) == sorted(f"rec-{i}" for i in range(records))
    assert kills >= 1
    with UplinkStore(tmp_path / "edge.db") as store:
        assert len(store) == 0 and store.integrity_ok()
