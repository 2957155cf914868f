"""The inference server's transport and accountability, for real on 127.0.0.1: HTTPS with a verifying
load client, the audit log of repository changes, and the per-token rate limit."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from skyline.errors import ConfigError, UnavailableError
from skyline.security.audit import verify_audit_log
from skyline.security.tls import client_ssl_context, generate_self_signed
from skyline.security.tokens import TokenAuthority
from skyline.serving.app import create_app
from skyline.serving.loadgen import fetch_metadata, run_load, synthesize_body
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import write_mlp_onnx
from skyline.serving.server import BackgroundServer

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    (tmp_path / "repo").mkdir()
    repository = ModelRepository(tmp_path / "repo")
    repository.add(write_mlp_onnx(tmp_path / "mlp.onnx"), name="mlp", version=1)
    return repository


def test_https_serves_verifying_clients_only(repo: ModelRepository, tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path / "server.crt", tmp_path / "server.key")
    authority = TokenAuthority(tmp_path / "tokens.json")
    auth = {"authorization": f"Bearer {authority.issue('app', 'operator')}"}
    trusted = client_ssl_context(cert)
    with BackgroundServer(create_app(repo, authority=authority, cores=1), tls=(cert, key)) as server:
        assert server.url.startswith("https://127.0.0.1:")

        async def load(context: ssl.SSLContext) -> dict[str, Any]:
            body = synthesize_body(await fetch_metadata(server.url, "mlp", auth, context))
            result = await run_load(
                server.url, path="/v2/models/mlp/infer", body=body, concurrency=2, duration_s=0.5,
                headers=auth, model="mlp", ssl_context=context,
            )  # fmt: skip
            return result.to_json()

        result = asyncio.run(load(trusted))
        assert result["errors"] == 0 and result["requests"] > 0
        assert result["batch_size_mean"] is not None  # /metrics was read over TLS with the token
        with pytest.raises(UnavailableError, match="certificate verify failed"):
            asyncio.run(load(client_ssl_context()))  # the system CAs do not know this certificate
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(server.url.replace("https://", "http://") + "/v2/health/live", timeout=5)


def test_repository_changes_are_audited_and_inference_is_not(repo: ModelRepository, tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    admin, viewer = authority.issue("root", "admin"), authority.issue("eve", "viewer")
    log = tmp_path / "audit.jsonl"
    app = create_app(repo, authority=authority, cores=1, audit_log=log)
    x = np.ones((1, 16), np.float32)
    infer = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/models/mlp/infer", json=infer, headers=bearer(admin)).status_code == 200
        assert client.post("/v2/repository/models/mlp/unload", headers=bearer(viewer)).status_code == 403
        assert client.post("/v2/repository/models/mlp/load", headers=bearer(admin)).status_code == 200
        assert client.post("/v2/repository/models/mlp/load").status_code == 401
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["subject"], r["action"], r["result"]) for r in records] == [
        ("eve", "POST /v2/repository/models/{name}/unload", "403"),
        ("root", "POST /v2/repository/models/{name}/load", "200"),
        ("anonymous", "POST /v2/repository/models/{name}/load", "401"),
    ]
    assert verify_audit_log(log).records == 3
    assert admin not in log.read_text()  # tokens are never recorded


def test_each_token_has_its_own_rate_limit(repo: ModelRepository, tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    first, second = authority.issue("a", "viewer"), authority.issue("b", "viewer")
    app = create_app(repo, authority=authority, cores=1, rate_limit_per_s=1.0)  # burst of 2
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [client.get("/v2/models/mlp", headers=bearer(first)) for _ in range(6)]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        limited = next(a for a in answers if a.status_code == 429)  # refills 1/s: 6 quick calls overflow
        assert int(limited.headers["retry-after"]) >= 1 and "rate limit" in limited.json()["error"]
        assert client.get("/v2/models/mlp", headers=bearer(second)).status_code == 200
    with pytest.raises(ConfigError, match="needs tokens"):
        create_app(repo, rate_limit_per_s=1.0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
