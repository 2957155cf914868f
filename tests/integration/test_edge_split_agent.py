"""The agent's split strategy end to end on 127.0.0.1: a real cloud app serving the tails behind the emulated
link (`LinkProxy`), a real agent and its local OIP v2 API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.agent_app import create_agent_app
from skyline.edge.background import BackgroundServer
from skyline.edge.cloud_app import create_cloud_app, edge_authority
from skyline.edge.ingest import IngestStore
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.split import SPLIT_INPUT_SHAPE, split_network, tail_runner
from skyline.errors import ConfigError
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.integration
NETWORK = "split-vgg"
FAST = LinkConditions(latency_ms=0.5)  # unlimited bandwidth, 1 ms RTT: the cloud computes 30× faster
SLOW = LinkConditions(latency_ms=5.0, bandwidth_mbps=2.0)  # one 48 kB input takes ~200 ms to send


@dataclass
class Setup:
    agent: EdgeAgent
    link: LinkProxy
    whole: np.ndarray


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
            public_key=tmp_path / "unused.pub",  # the split network is built in: no repository pull
            strategy="split",
            edge_slowdown=30.0,
            probe_bytes=64 * 1024,
            cloud_timeout_s=2.0,
        )
        agent = EdgeAgent(config)
        try:
            yield Setup(agent, link, tail_runner(network)(0, x))
        finally:
            agent.stop()
    ingest.close()


def _inputs() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, *SPLIT_INPUT_SHAPE)).astype(np.float32)


def test_split_answers_equal_the_whole_network_through_the_local_api(setup: Setup, tmp_path: Path) -> None:
    agent = setup.agent
    assert agent.split is not None and agent.split.partition == len(agent.split.model)  # edge until probed
    assert agent.split.refresh() == 0  # fast link, 30× slower edge: everything goes to the cloud
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
    assert agent.split.refresh() == 0 and agent.status()["split_link"] == "up"


def test_the_cut_follows_the_links_bandwidth(setup: Setup) -> None:
    agent = setup.agent
    assert agent.split is not None
    assert agent.split.refresh() == 0
    setup.link.conditions = SLOW
    cuts = [agent.split.refresh() for _ in range(2)]  # smoothed: the second probe at the latest
    assert cuts[-1] == 16, cuts
    status = agent.status()
    assert status["split_changes"] >= 1 and status["split_bandwidth_mbps"] < 10
    setup.link.conditions = FAST
    assert [agent.split.refresh() for _ in range(3)][-1] == 0


def test_split_needs_a_split_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split network"):
        AgentConfig(
            cloud_url="http://127.0.0.1:1",
            token="t",
            model="digits",
            store=tmp_path,
            public_key=tmp_path / "k.pub",
            strategy="split",
        )
