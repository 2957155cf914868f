"""The edge agent against a real cloud app: signed model updates (and refusals), local inference, telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.agent_app import create_agent_app
from skyline.edge.cloud_app import create_cloud_app, edge_authority
from skyline.edge.ingest import IngestStore
from skyline.edge.publish import publish_model
from skyline.security.rbac import Role
from skyline.security.signing import generate_signing_keys
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from skyline.training.models import build_model

pytestmark = pytest.mark.integration
SHAPE = (1, 8, 8)


@dataclass
class Cloud:
    server: BackgroundServer
    repository: Path
    private_key: Path
    public_key: Path
    ingest: IngestStore
    token: str
    authority: TokenAuthority


def _cloud_model(x: np.ndarray) -> np.ndarray:
    return np.tile(np.eye(10, dtype=np.float32)[7], (x.shape[0], 1))


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    private, public = generate_signing_keys(
        tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub"
    )
    repository = tmp_path / "repository"
    repository.mkdir()
    ingest = IngestStore(tmp_path / "ingest.db")
    authority, token = edge_authority(tmp_path / "cloud-tokens.json")
    app = create_cloud_app(
        ingest=ingest,
        authority=authority,
        models={"cloud-classifier": _cloud_model},
        repository=repository,
    )
    with BackgroundServer(app) as server:
        yield Cloud(server, repository, private, public, ingest, token, authority)
    ingest.close()


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("linear", SHAPE, 10)


def _agent(cloud: Cloud, store: Path, strategy: str = "local") -> EdgeAgent:
    config = AgentConfig(
        cloud_url=cloud.server.url,
        token=cloud.token,
        model="digits",
        store=store,
        public_key=cloud.public_key,
        strategy=strategy,
        threshold=-1.0,  # cascade: every input is "hard"
    )
    return EdgeAgent(config)


def test_signed_updates_swap_and_bad_downloads_are_refused(cloud: Cloud, tmp_path: Path) -> None:
    agent = _agent(cloud, tmp_path / "edge")
    publish_model(
        _model(1), SHAPE, root=cloud.repository, name="digits", version=1, private_key=cloud.private_key
    )
    assert agent.refresh_model() == 1 and agent.model_version == 1
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype(np.float32)
    before, _ = agent.infer(x)

    # v2 tampered after signing: refused, v1 keeps serving, nothing left in staging.
    bad = publish_model(
        _model(2), SHAPE, root=cloud.repository, name="digits", version=2, private_key=cloud.private_key
    )
    onnx = bad / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-4] + b"evil")
    assert agent.refresh_model() is None
    assert agent.model_version == 1 and agent.sync.counts.refused == 1
    assert not any((tmp_path / "edge" / "staging").iterdir())
    np.testing.assert_array_equal(agent.infer(x)[0], before)

    # v3 signed by another key: refused too.
    other_private, _ = generate_signing_keys(tmp_path / "other.key", tmp_path / "other.pub")
    publish_model(
        _model(3), SHAPE, root=cloud.repository, name="digits", version=3, private_key=other_private
    )
    assert agent.refresh_model() is None and agent.sync.counts.refused == 2

    # v4 good: swapped in atomically; a restarted agent serves it at once.
    publish_model(
        _model(4), SHAPE, root=cloud.repository, name="digits", version=4, private_key=cloud.private_key
    )
    assert agent.refresh_model() == 4
    assert not np.allclose(agent.infer(x)[0], before)
    agent.stop()
    restarted = _agent(cloud, tmp_path / "edge")
    assert restarted.model_version == 4
    restarted.stop()


def test_agent_serves_cascades_and_reports(cloud: Cloud, tmp_path: Path) -> None:
    publish_model(
        _model(1), SHAPE, root=cloud.repository, name="digits", version=1, private_key=cloud.private_key
    )
    agent = _agent(cloud, tmp_path / "edge", strategy="cascade")
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
        assert httpx.get(f"{server.url}/health").status_code == 200
        answer = local.post("/v2/models/digits/infer", json=body).json()
        assert answer["parameters"]["sources"] == ["cloud"]
        assert int(np.argmax(answer["outputs"][0]["data"])) == 7
        assert local.post("/v2/models/other/infer", json=body).status_code == 404
        assert local.post("/v2/models/digits/infer", json={"inputs": []}).status_code == 422
        for shape, size in (([64], 64), ([1, 64], 64), ([2, 1, 4, 8], 64), ([0, *SHAPE], 0), ([1], 1)):
            wrong = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.0] * size}]}
            refused = local.post("/v2/models/digits/infer", json=wrong)
            assert refused.status_code == 422, (shape, refused.text)
            assert "does not fit" in refused.json()["error"] or "not a batch" in refused.json()["error"]
        huge = {"inputs": [{"name": "input", "shape": [2**40, 2**40, 2**40], "datatype": "FP32", "data": []}]}
        assert local.post("/v2/models/digits/infer", json=huge).status_code == 422
    agent._report()
    telemetry = httpx.get(
        f"{cloud.server.url}/v1/telemetry",
        headers={"authorization": f"Bearer {cloud.authority.issue('ops', Role.VIEWER)}"},
    ).json()
    assert telemetry["edge-agent"]["offloaded"] == 1
    assert agent.sender.drain(deadline_s=10)
    assert cloud.ingest.count("result") == 1
    agent.stop()
