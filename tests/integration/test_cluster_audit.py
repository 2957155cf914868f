"""`skyline cluster up --audit-log`: every state-changing call is in a verifiable, hash-chained log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.errors import AuthError
from skyline.security.audit import verify_audit_log

pytestmark = pytest.mark.integration


def test_state_changing_calls_are_audited_with_who_and_result(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with ServerThread(ServerConfig(state_dir=tmp_path / "state", port=0, audit_log=log)) as server:
        authority = server.built.authority
        admin_token = authority.bootstrap_admin() or ""
        with ClusterClient(server.url, admin_token) as admin:
            job = admin.submit({"command": "true"})
            admin.cancel(job["id"])
            admin.jobs()  # a read: not audited
        with ClusterClient(server.url, "sky_bad_token") as stranger, pytest.raises(AuthError):
            stranger.submit({"command": "true"})
        assert httpx.get(server.url + "/healthz").status_code == 200
    records = [json.loads(line) for line in log.read_text().splitlines()]
    seen = [(r["subject"], r["action"], r["result"]) for r in records]
    assert seen == [
        ("admin", "POST /v1/jobs", "201"),
        ("admin", "POST /v1/jobs/{job_id}/cancel", "200"),
        ("anonymous", "POST /v1/jobs", "401"),
    ]
    assert all("sky_" not in line for line in log.read_text().splitlines())  # no token is recorded
    assert verify_audit_log(log).records == 3
