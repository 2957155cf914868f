"""The agent's split strategy end to end on 127.0.0.1: a real cloud app serving the tails behind the emulated
link (`LinkProxy`), a real agent and its local OIP v2 API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.agent_app import create_agent_app
from skyline.edge.cloud_app import create_cloud_app, edge_authority
from skyline.edge.cloud_client import CloudClient
from skyline.edge.ingest import IngestStore
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.partition import NetworkProfile, PartitionController, brute_force_partition
from skyline.edge.split import SPLIT_INPUT_SHAPE, split_network, tail_runner
from skyline.errors import ConfigError, UnavailableError
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer

pytestmark = pytest.mark.integration
NETWORK = "split-vgg"
FAST = LinkConditions(latency_ms=0.5)  # unlimited bandwidth, 1 ms RTT


@dataclass
class Setup:
    agent: EdgeAgent
    link: LinkProxy
    whole: np.ndarray
    authority: TokenAuthority
    token: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    ingest = IngestStore(tmp_path / "ingest.db")
    authority, token = edge_authority(tmp_path / "cloud-tokens.json")
    network = split_network(seed=0)
    app = create_cloud_app(ingest=ingest, authority=authority, tails={NETWORK: tail_runner(network)})
    x = np.random.default_rng(0).standard_normal((2, *SPLIT_INPUT_SHAPE)).astype(np.float32)
    with BackgroundServer(app) as server, LinkProxy(server.port, FAST) as link:
        config = AgentConfig(
            cloud_url=link.url,
            token=token,
            model=NETWORK,
            store=tmp_path / "edge",
            strategy="split",
            edge_slowdown=30.0,
            probe_bytes=64 * 1024,
            cloud_timeout_s=2.0,
        )
        agent = EdgeAgent(config)
        try:
            yield Setup(agent, link, tail_runner(network)(0, x), authority, token)
        finally:
            agent.stop()
    ingest.close()


def _inputs() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, *SPLIT_INPUT_SHAPE)).astype(np.float32)


def test_split_answers_equal_the_whole_network_through_the_local_api(setup: Setup, tmp_path: Path) -> None:
    agent = setup.agent
    assert agent.split is not None and agent.split.partition == len(agent.split.model)  # edge until probed
    agent.split.refresh()  # which cut it picks depends on this host's timings: tested with fixed profiles below
    assert agent.status()["split_link"] == "up"
    local = TokenAuthority(tmp_path / "local-tokens.json")
    invoker = {"authorization": f"Bearer {local.issue('app', Role.INVOKER)}"}
    admin = {"authorization": f"Bearer {local.bootstrap_admin()}"}
    x = _inputs()
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    with (
        BackgroundServer(create_agent_app(agent, authority=local)) as server,
        httpx.Client(base_url=server.url, headers=invoker, timeout=30) as client,
    ):
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        for cut, source in ((0, "cloud"), (6, "split"), (16, "edge")):
            agent.split.partition = cut  # the chosen cut, then a middle cut and edge-only
            answer = client.post(f"/v2/models/{NETWORK}/infer", json=body).json()
            assert answer["parameters"]["sources"] == [source, source]
            probs = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
            np.testing.assert_allclose(probs, setup.whole, rtol=1e-4, atol=1e-6)
        wrong = {"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]}
        assert client.post(f"/v2/models/{NETWORK}/infer", json=wrong).status_code == 422
        status = client.get("/v1/status", headers=admin).json()
    assert status["strategy"] == "split" and status["answered"] == 6 and status["split_link"] == "up"
    assert status["split_bandwidth_mbps"] > 0 and status["split_rtt_ms"] >= 0
    assert status["split_layer"] == "15:linear" and status["split_partition"] == 16


def test_cloud_down_falls_back_to_the_whole_network_on_the_edge(setup: Setup) -> None:
    agent = setup.agent
    assert agent.split is not None
    agent.split.refresh()
    agent.split.partition = 6
    setup.link.set_outage(True)
    probs, sources = agent.infer(_inputs())
    assert sources == ["edge-degraded", "edge-degraded"]
    np.testing.assert_allclose(probs, setup.whole, rtol=1e-4, atol=1e-6)
    assert agent.split.refresh() == 16  # a failed probe: edge only until the cloud is back
    status = agent.status()
    assert status["degraded"] == 2 and status["split_link"] == "down" and status["split_probe_failures"] == 1
    assert agent.infer(_inputs())[1] == ["edge", "edge"]
    setup.link.set_outage(False)
    cut = agent.split.refresh()
    assert agent.status()["split_link"] == "up" and cut == agent.split.controller.partition


def test_the_cut_follows_the_measured_link(setup: Setup) -> None:
    """Deterministic: the wall-clock layer profile and the probe through the shared host's loopback would make
    the chosen cut depend on this machine's load, so the controller gets fixed profiles (1 ms per layer on
    the edge, 0.1 ms in the cloud) and fixed link readings; the real probe's failure path is tested above."""
    split = setup.agent.split
    assert split is not None
    layers = [replace(layer, edge_ms=1.0, cloud_ms=0.1) for layer in split.layers]
    fast = NetworkProfile(bandwidth_mbps=1000.0, rtt_ms=1.0)  # cut 0: ~1 + 0.4 + 1.6 ms < 16 ms on the edge
    slow = NetworkProfile(bandwidth_mbps=0.1, rtt_ms=100.0)  # any cloud cut >= 100 ms > 16 ms on the edge
    readings = iter([fast, slow, fast])
    split.controller = PartitionController(
        layers, split.controller.input_bytes, lambda: next(readings), alpha=1.0
    )
    assert brute_force_partition(layers, split.controller.input_bytes, fast) == 0
    assert split.refresh() == 0 and split.partition == 0
    assert split.refresh() == 16 and split.partition == 16
    status = setup.agent.status()
    assert status["split_changes"] == 1 and status["split_bandwidth_mbps"] == 0.1
    assert status["split_layer"] == "15:linear"
    assert split.refresh() == 0 and setup.agent.status()["split_changes"] == 2


def test_a_revoked_token_is_a_failed_probe_not_a_dead_thread(setup: Setup) -> None:
    agent = setup.agent
    assert agent.split is not None
    agent.split.refresh()
    setup.authority.revoke(setup.authority.verify(setup.token).token_id)
    assert agent.split.refresh() == 16  # AuthError from the cloud: edge only, counted
    status = agent.status()
    assert status["split_link"] == "down" and status["split_probe_failures"] == 1


def test_the_periodic_loop_survives_a_failing_round(setup: Setup) -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("first round fails")
        setup.agent._stop.set()  # the second round ran: the loop outlived the failure

    thread = threading.Thread(target=setup.agent._every, args=(0.01, flaky), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(calls) == 2


def test_a_malformed_tail_answer_is_unavailable_not_a_key_error() -> None:
    app = FastAPI()

    @app.post("/v1/split/{model}/{partition}")
    def tail(model: str, partition: int) -> dict[str, object]:
        return {"probs": [0.5, 0.5], "shape": [1, 2]}  # no cloud_ms

    with BackgroundServer(app) as server:
        client = CloudClient(server.url, timeout_s=5.0)
        try:
            with pytest.raises(UnavailableError, match="malformed split tail answer"):
                client.split_tail(NETWORK, 3, b"\0" * 8, {})
        finally:
            client.close()


def test_split_needs_a_split_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split network"):
        AgentConfig(
            cloud_url="http://127.0.0.1:1",
            token="t",
            model="digits",
            store=tmp_path,
            strategy="split",
        )
