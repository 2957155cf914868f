"""The split agent's failure paths against a real edge cloud: a revoked token is a failed probe (edge-only,
counted), not a dead thread; the periodic loops survive a failing round; a malformed tail answer is
`UnavailableError`; the agent's local API answers split requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from skyline.edge.agent import EdgeAgent
from skyline.edge.agent_app import create_agent_app
from skyline.edge.cloud_client import CloudClient
from skyline.edge.local_model import LocalModel
from skyline.errors import UnavailableError
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from skyline.testing.edge import EdgeWorld, digits, edge_world, trained_digits

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeWorld]:
    with edge_world(tmp_path_factory.mktemp("split"), served=[(trained_digits(), {"split": True})]) as built:
        yield built


@pytest.fixture
def agent(world: EdgeWorld, tmp_path: Path) -> Iterator[EdgeAgent]:
    built = world.agent("split-agent", strategy="split", store=tmp_path / "agent")
    assert built.refresh_model() == 1
    yield built
    built.stop()


def test_the_local_api_answers_split_requests(world: EdgeWorld, agent: EdgeAgent, tmp_path: Path) -> None:
    agent.strategy.serving.partition = 2
    tokens = TokenAuthority(tmp_path / "local.json")
    headers = {"authorization": f"Bearer {tokens.issue('app', Role.INVOKER)}"}
    x = digits().test.x.numpy()[:3]
    body = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    with BackgroundServer(create_agent_app(agent, authority=tokens)) as server:
        answer = httpx.post(
            f"{server.url}/v2/models/digits/infer", json=body, headers=headers, timeout=30
        ).json()
    assert answer["parameters"]["sources"] == ["split"] * 3
    probs = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(3, 10)
    expected = LocalModel(world.repository / "digits" / "1", 1).predict(x)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_a_revoked_token_is_a_failed_probe_not_a_dead_thread(world: EdgeWorld, tmp_path: Path) -> None:
    token = world.cloud.authority.issue("revoked", Role.EDGE)  # the agent's own name
    agent = world.agent("revoked", strategy="split", store=tmp_path / "revoked", token=token)
    try:
        assert agent.refresh_model() == 1 and agent.status()["split_link"] == "up"
        world.cloud.authority.revoke(world.cloud.authority.verify(token).token_id)
        serving = agent.strategy.serving
        assert serving.refresh() == len(serving.model)  # AuthError from the cloud: edge only, counted
        status = agent.status()
        assert status["split_link"] == "down" and status["split_probe_failures"] == 1
    finally:
        agent.stop()


def test_the_periodic_loop_survives_a_failing_round(agent: EdgeAgent) -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("first round fails")
        agent._stop.set()  # the second round ran: the loop outlived the failure

    thread = threading.Thread(target=agent._every, args=(0.01, flaky), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(calls) == 2


def test_a_malformed_tail_answer_is_unavailable_not_a_key_error() -> None:
    app = FastAPI()

    @app.post("/v1/split/{model}/{version}/{partition}")
    def tail(model: str, version: int, partition: int) -> dict[str, object]:
        return {"probs": [0.5, 0.5], "shape": [1, 2]}  # no cloud_ms

    with BackgroundServer(app) as server:
        client = CloudClient(server.url, timeout_s=5.0)
        try:
            with pytest.raises(UnavailableError, match="malformed split tail answer"):
                client.split_tail("digits", 1, 3, b"\0" * 8, {})
        finally:
            client.close()
