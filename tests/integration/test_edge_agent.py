"""The edge agent against a real edge cloud: the fleet's version of its model (signed; refusals), local
inference through its API, labelled records, telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from skyline.edge.agent_app import create_agent_app
from skyline.federated.data_folder import read_rows
from skyline.security.rbac import Role
from skyline.security.signing import generate_signing_keys
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from skyline.testing.edge import EdgeWorld, constant_classifier, digits, edge_world
from skyline.training.models import build_model

pytestmark = pytest.mark.integration
SHAPE = (1, 8, 8)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("linear", SHAPE, 10).eval()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[EdgeWorld]:
    served = [
        (_model(1), {}),
        (constant_classifier(SHAPE, label=7, classes=10), {"name": "cloud-classifier"}),
    ]
    with edge_world(tmp_path, served=served) as built:
        yield built


def test_the_fleets_version_is_verified_swapped_and_refused_when_bad(
    world: EdgeWorld, tmp_path: Path
) -> None:
    agent = world.agent("edge-1", threshold=-1.0)
    assert agent.refresh_model() == 1 and agent.model_version == 1
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype(np.float32)
    before, _ = agent.infer(x)
    fleet = world.cloud.fleet

    # v2 tampered after signing: refused, v1 keeps serving, nothing left in staging.
    onnx = world.publish(_model(2), version=2) / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-4] + b"evil")
    fleet.pin("digits", 2)
    assert agent.refresh_model() is None
    assert agent.model_version == 1 and agent.sync.counts.refused == 1
    assert not any((tmp_path / "agents" / "edge-1" / "staging").iterdir())
    np.testing.assert_array_equal(agent.infer(x)[0], before)

    # v3 signed by another key: refused too.
    other_private, _ = generate_signing_keys(tmp_path / "other.key", tmp_path / "other.pub")
    world.publish(_model(3), version=3, private_key=other_private)
    fleet.pin("digits", 3)
    assert agent.refresh_model() is None and agent.sync.counts.refused == 2

    # v4 good: swapped in atomically; a restarted agent serves it at once.
    world.publish(_model(4), version=4)
    fleet.pin("digits", 4)
    assert agent.refresh_model() == 4
    assert not np.allclose(agent.infer(x)[0], before)
    agent.stop()
    restarted = world.agent("edge-1")
    assert restarted.model_version == 4

    # Back to v1 (installed and verified here before): allowed; to v2 (never installed, older): refused.
    fleet.pin("digits", 1)
    assert restarted.refresh_model() == 1
    np.testing.assert_array_equal(restarted.infer(x)[0], before)
    fleet.pin("digits", 2)
    assert restarted.refresh_model() is None and restarted.model_version == 1
    assert "rollback refused" in restarted.sync.counts.last_error or restarted.sync.counts.refused == 1
    restarted.stop()


def test_a_published_version_waits_for_a_rollout(world: EdgeWorld) -> None:
    agent = world.agent("edge-1")
    assert agent.refresh_model() == 1
    world.publish(_model(2), version=2)
    assert agent.refresh_model() is None and agent.model_version == 1  # the fleet is pinned at 1
    second = world.agent("edge-2")  # a new agent gets the fleet's version, not the newest
    assert second.refresh_model() == 1
    agent.stop()
    second.stop()


def test_agent_serves_cascades_labels_and_reports(world: EdgeWorld, tmp_path: Path) -> None:
    agent = world.agent("edge-1", strategy="cascade", threshold=-1.0, labels={"site": "lab"})  # all "hard"
    agent.refresh_model()
    local_tokens = TokenAuthority(tmp_path / "local-tokens.json")
    invoker = {"authorization": f"Bearer {local_tokens.issue('app-1', Role.INVOKER)}"}
    admin = {"authorization": f"Bearer {local_tokens.bootstrap_admin()}"}
    with (
        BackgroundServer(create_agent_app(agent, authority=local_tokens)) as server,
        httpx.Client(base_url=server.url, headers=invoker) as local,
    ):
        body = {"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32", "data": [0.0] * 64}]}
        # Deny by default: no token 401, a role that may not read metrics 403; /health stays public.
        assert httpx.post(f"{server.url}/v2/models/digits/infer", json=body).status_code == 401
        assert local.get("/v1/status").status_code == 403
        assert local.get("/v1/status", headers=admin).json()["model_version"] == 1
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "model_version": 1}
        answer = local.post("/v2/models/digits/infer", json=body).json()
        assert answer["parameters"]["sources"] == ["cloud"] and answer["model_version"] == "1"
        assert int(np.argmax(answer["outputs"][0]["data"])) == 7
        assert local.post("/v2/models/other/infer", json=body).status_code == 404
        assert local.post("/v2/models/digits/infer", json={"inputs": []}).status_code == 400  # OIP: 400
        for shape, size in (([64], 64), ([1, 64], 64), ([2, 1, 4, 8], 64), ([0, *SHAPE], 0)):
            wrong = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.0] * size}]}
            refused = local.post("/v2/models/digits/infer", json=wrong)
            assert refused.status_code == 422, (shape, refused.text)
            assert "does not fit" in refused.json()["error"] or "not a batch" in refused.json()["error"]
        huge = {"inputs": [{"name": "input", "shape": [2**40, 2**40, 2**40], "datatype": "FP32", "data": []}]}
        assert local.post("/v2/models/digits/infer", json=huge).status_code == 400
        x, y = digits().test.x.numpy()[:4], digits().test.y.numpy()[:4]
        labelled = {
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        answered = local.post("/v1/labels", json={**labelled, "labels": y.tolist()}).json()
        assert answered["labelled"] == 4 and len(answered["predicted"]) == 4
        assert local.post("/v1/labels", json={**labelled, "labels": [1]}).status_code == 422
    agent.report()
    telemetry = httpx.get(
        f"{world.cloud.url}/v1/telemetry",
        headers={"authorization": f"Bearer {world.cloud.authority.issue('ops', Role.VIEWER)}"},
    ).json()
    assert telemetry["edge-1"]["offloaded"] == 1 and telemetry["edge-1"]["errors"] == 5
    (record,) = world.cloud.fleet.agents()
    assert record.labels == {"site": "lab"} and record.stats("digits", 1).labelled == 4
    assert agent.sender.drain(deadline_s=10)
    assert world.cloud.ingest.count("result") == 1 and world.cloud.ingest.count("labelled") == 4
    agent.stop()
    # the labelled rows are training data now
    assert len(read_rows(tmp_path / "agents" / "edge-1" / "data")[1]) == 4
