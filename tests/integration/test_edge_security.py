"""The edge cloud's transport and accountability, for real on 127.0.0.1: HTTPS that the edge's clients
verify (a client with only the system CAs is refused), the audit log of uplink and telemetry calls, and the
per-token rate limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from skyline.edge.cloud import CloudConfig, EdgeCloud
from skyline.edge.cloud_client import CloudClient
from skyline.edge.publish import publish_model
from skyline.edge.uplink_sender import SenderConfig, UplinkSender
from skyline.edge.uplink_store import UplinkPolicy, UplinkStore
from skyline.errors import UnavailableError
from skyline.security.audit import verify_audit_log
from skyline.security.signing import generate_signing_keys
from skyline.security.tls import generate_self_signed
from skyline.security.tokens import TokenAuthority
from skyline.testing.edge import constant_classifier

pytestmark = pytest.mark.integration


def _cloud(folder: Path, authority: TokenAuthority, **options: Any) -> EdgeCloud:
    """An edge cloud serving model ``m`` (4 features → 3 classes), with ``options`` of `CloudConfig`."""
    private, public = generate_signing_keys(folder / "signing.key", folder / "signing.pub")
    publish_model(
        constant_classifier((4,), label=1),
        (4,),
        root=folder / "repo",
        name="m",
        version=1,
        private_key=private,
    )
    config = CloudConfig(
        repository=folder / "repo", tokens=folder / "t.json", ingest=folder / "ingest.db", port=0,
        public_key=public, **options,
    )  # fmt: skip
    return EdgeCloud(config, authority=authority)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_edge_clients_verify_the_clouds_certificate(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path / "cloud.crt", tmp_path / "cloud.key")
    authority = TokenAuthority(tmp_path / "tokens.json")
    token = authority.issue("edge-1", "edge")
    store = UplinkStore(tmp_path / "uplink.db", UplinkPolicy())
    store.put("hard-example", {"score": 0.9})
    with _cloud(tmp_path, authority, tls=(cert, key)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = CloudClient(server.url, token=token, timeout_s=30, ca=cert)
        probs = trusted.infer("m", np.zeros((2, 4), np.float32))
        assert probs.shape == (2, 3)
        trusted.telemetry("edge-1", {"infer_count": 2})
        trusted.close()
        sender = UplinkSender(store, SenderConfig(cloud_url=server.url, token=token, ca=cert))
        assert sender.send_once() == 1  # the store-and-forward uplink over verified TLS
        sender.close()
        store.close()
        untrusting = CloudClient(server.url, token=token, timeout_s=30)  # system CAs only
        with pytest.raises(UnavailableError, match="unreachable"):
            untrusting.telemetry("edge-1", {})
        untrusting.close()
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            httpx.get(server.url + "/health", timeout=5)  # what the refusal is: the certificate check
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(server.url.replace("https://", "http://") + "/health", timeout=5)


def test_uplink_and_telemetry_are_audited_and_inference_is_not(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    edge, viewer = authority.issue("edge-1", "edge"), authority.issue("eve", "viewer")
    log = tmp_path / "audit.jsonl"
    infer = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}
    records = {"records": [{"id": "r1", "kind": "k", "payload": {}, "created_at": 1.0}]}
    with (
        _cloud(tmp_path, authority, audit_log=log) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.post("/v2/models/m/infer", json=infer, headers=bearer(edge)).status_code == 200
        assert client.post("/v1/echo", content=b"x", headers=bearer(edge)).status_code == 200
        assert client.post("/v1/uplink", json=records, headers=bearer(edge)).status_code == 200
        assert client.post("/v1/uplink", json=records, headers=bearer(viewer)).status_code == 403
        telemetry = {"agent": "edge-1", "metrics": {}}
        assert client.post("/v1/telemetry", json=telemetry).status_code == 401
        assert client.post("/v1/telemetry", json=telemetry, headers=bearer(edge)).status_code == 200
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["subject"], r["action"], r["result"]) for r in entries] == [
        ("edge-1", "POST /v1/uplink", "200"),
        ("eve", "POST /v1/uplink", "403"),
        ("anonymous", "POST /v1/telemetry", "401"),
        ("edge-1", "POST /v1/telemetry", "200"),
    ]
    assert verify_audit_log(log).records == 4
    assert edge not in log.read_text()  # tokens are never recorded


def test_each_edge_token_has_its_own_rate_limit(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    first, second = authority.issue("edge-1", "edge"), authority.issue("edge-2", "edge")
    with (
        _cloud(tmp_path, authority, rate_limit_per_s=1.0) as server,  # burst of 2
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        answers = [client.post("/v1/echo", content=b"x", headers=bearer(first)) for _ in range(6)]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        limited = next(a for a in answers if a.status_code == 429)  # refills 1/s: 6 quick calls overflow
        assert int(limited.headers["retry-after"]) >= 1 and "rate limit" in limited.json()["error"]
        assert client.post("/v1/echo", content=b"x", headers=bearer(second)).status_code == 200
        assert client.get("/health").status_code == 200  # the unauthenticated probe is not limited


def test_a_device_token_speaks_only_for_its_own_agent(tmp_path: Path) -> None:
    """Rollouts decide on what agents report about themselves: agent-a's token may not report telemetry,
    uplink labelled records or ask the desired version as agent-b (403, nothing stored); an admin may."""
    authority = TokenAuthority(tmp_path / "tokens.json")
    a, admin = authority.issue("agent-a", "edge"), authority.issue("root", "admin")
    node = authority.issue("node-1", "agent")  # a cluster node's token is one machine's too
    labelled = {"agent": "agent-b", "model": "m", "model_version": 1, "label": 1, "predicted": 1}
    forged = {"records": [{"id": "f1", "kind": "labelled", "payload": labelled, "created_at": 1.0}]}
    own = {"records": [{"id": "o1", "kind": "labelled", "payload": {**labelled, "agent": "agent-a"},
                        "created_at": 1.0}, {"id": "o2", "kind": "result", "payload": {}, "created_at": 1.0}]}  # fmt: skip
    stats = {"m": {"version": 1, "stats": {"1": {"answered": 1000, "errors": 0}}}}
    with (
        _cloud(tmp_path, authority) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for token in (a, node):
            refused = client.post(
                "/v1/telemetry", json={"agent": "agent-b", "models": stats}, headers=bearer(token)
            )
            assert refused.status_code == 403 and "give each agent its own token" in refused.json()["error"]
        assert client.post("/v1/uplink", json=forged, headers=bearer(a)).status_code == 403
        mixed = {"records": [*own["records"], *forged["records"]]}  # one forged record refuses the batch
        assert client.post("/v1/uplink", json=mixed, headers=bearer(a)).status_code == 403
        assert client.get("/v1/fleet/agents/agent-b/models/m", headers=bearer(a)).status_code == 403
        assert server.fleet.agents() == [] and server.ingest.count() == 0  # nothing forged was stored

        assert client.post("/v1/telemetry", json={"agent": "agent-a"}, headers=bearer(a)).status_code == 200
        assert client.post("/v1/uplink", json=own, headers=bearer(a)).json() == {
            "accepted": 2,
            "duplicates": 0,
        }
        assert client.get("/v1/fleet/agents/agent-a/models/m", headers=bearer(a)).json() == {"version": 1}
        assert client.get("/v1/fleet/agents/agent-b/models/m", headers=bearer(admin)).status_code == 200
        assert (
            client.post("/v1/telemetry", json={"agent": "agent-b"}, headers=bearer(admin)).status_code == 200
        )
        assert server.ingest.labelled_accuracy("m", 1, ["agent-a"]) == (1, 1)
        assert server.ingest.labelled_accuracy("m", 1, ["agent-b"]) == (0, 0)
        assert [agent.name for agent in server.fleet.agents()] == ["agent-a", "agent-b"]
