"""Audit log: every edit, insertion and deletion (middle or end) is detected; HTTP calls are audited."""

# No `from __future__ import annotations`: an endpoint below takes `Annotated[..., Depends(local)]`.
import json
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from skyline.errors import ConfigError, IntegrityError
from skyline.security.audit import AuditLog, verify_audit_log
from skyline.security.http import install_error_handlers, require
from skyline.security.http_audit import install_audit
from skyline.security.rbac import Principal
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.unit


def filled(path: Path, n: int = 5, key: bytes | None = None) -> AuditLog:
    log = AuditLog(path, key=key)
    for i in range(n):
        log.append(subject=f"user{i}", role="operator", action="POST /v1/jobs", resource="jobs", result="201")
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in new_lines))


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    filled(tmp_path / "audit.jsonl")
    report = verify_audit_log(tmp_path / "audit.jsonl")
    assert report.records == 5 and report.head_checked
    assert report.last_hash == json.loads(lines(tmp_path / "audit.jsonl")[-1])["hash"]


def test_an_edited_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path)
    content = lines(path)
    content[2] = content[2].replace('"result": "201"', '"result": "403"')
    rewrite(path, content)
    with pytest.raises(IntegrityError, match=r"line 3 .*hash mismatch: the record was edited"):
        verify_audit_log(path)


@pytest.mark.parametrize("where", [0, 2, 4])
def test_a_deleted_record_is_detected_anywhere(tmp_path: Path, where: int) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path)
    content = lines(path)
    del content[where]
    rewrite(path, content)
    with pytest.raises(IntegrityError, match=r"inserted or deleted|deleted from the end"):
        verify_audit_log(path)


def test_an_inserted_record_is_detected_even_with_a_valid_looking_copy(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path)
    content = lines(path)
    content.insert(3, content[1])  # a replayed genuine record
    rewrite(path, content)
    with pytest.raises(IntegrityError, match="line 4"):
        verify_audit_log(path)


def test_a_rechained_forgery_is_caught_when_the_log_is_keyed(tmp_path: Path) -> None:
    # Without the key an attacker can rebuild a consistent plain-sha256 chain; with a key they cannot.
    genuine, forged = tmp_path / "genuine.jsonl", tmp_path / "forged.jsonl"
    filled(genuine, 3, key=b"k" * 32)
    AuditLog(forged).append(
        subject="mallory", role="admin", action="DELETE /v1/jobs/1", resource="jobs", result="200"
    )
    forged_line = lines(forged)[0]
    rewrite(genuine, [forged_line])
    (tmp_path / "genuine.jsonl.head").write_text((tmp_path / "forged.jsonl.head").read_text())
    verify_audit_log(genuine)  # plain sha256 cannot tell ...
    with pytest.raises(IntegrityError, match="hash mismatch"):
        verify_audit_log(genuine, key=b"k" * 32)  # ... the HMAC key can


def test_garbage_missing_logs_and_missing_heads(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path, 2)
    rewrite(path, [*lines(path), "not json"])
    with pytest.raises(IntegrityError, match="line 3: not a valid audit record"):
        verify_audit_log(path)
    with pytest.raises(ConfigError, match="no audit log"):
        verify_audit_log(tmp_path / "nope.jsonl")
    filled(tmp_path / "b.jsonl", 1)
    (tmp_path / "b.jsonl.head").unlink()
    with pytest.raises(IntegrityError, match="no head file"):
        verify_audit_log(tmp_path / "b.jsonl")


def test_every_state_changing_http_call_is_audited_with_who_and_result(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    admin, viewer = authority.issue("root", "admin"), authority.issue("vera", "viewer")
    app = FastAPI()
    install_error_handlers(app)
    install_audit(app, AuditLog(tmp_path / "audit.jsonl"))
    create = require(authority, "create", "jobs")

    @app.post("/v1/jobs/{job_id}")
    def submit(job_id: str, who: Annotated[Principal, Depends(create)]) -> dict[str, str]:
        return {"id": job_id}

    @app.get("/v1/jobs")
    def listing() -> list[str]:
        return []

    client = TestClient(app)
    client.post("/v1/jobs/a", headers={"Authorization": f"Bearer {admin}"})
    client.post("/v1/jobs/b", headers={"Authorization": f"Bearer {viewer}"})
    client.post("/v1/jobs/c")
    client.get("/v1/jobs")  # reads are not audited
    records = [json.loads(line) for line in lines(tmp_path / "audit.jsonl")]
    summary = [(r["subject"], r["role"], r["action"], r["resource"], r["result"]) for r in records]
    assert summary == [
        ("root", "admin", "POST /v1/jobs/{job_id}", "jobs", "200"),
        ("vera", "viewer", "POST /v1/jobs/{job_id}", "jobs", "403"),
        ("anonymous", "-", "POST /v1/jobs/{job_id}", "jobs", "401"),
    ]
    assert admin not in (tmp_path / "audit.jsonl").read_text()
    assert verify_audit_log(tmp_path / "audit.jsonl").records == 3


def test_apps_with_their_own_auth_are_audited_through_the_authority(tmp_path: Path) -> None:
    # Like the inference server's guard: the endpoint verifies the token itself, not via bearer_principal.
    authority = TokenAuthority(tmp_path / "tokens.json")
    invoker = authority.issue("ivan", "invoker")
    app = FastAPI()
    install_error_handlers(app)
    install_audit(app, AuditLog(tmp_path / "audit.jsonl"), authority=authority)

    @app.post("/v2/models/{name}/infer")
    def infer(name: str) -> dict[str, str]:
        return {"model": name}

    client = TestClient(app)
    client.post("/v2/models/m/infer", headers={"Authorization": f"Bearer {invoker}"})
    client.post("/v2/models/m/infer", headers={"Authorization": "Bearer sky_0123456789ab_forged"})
    records = [json.loads(line) for line in lines(tmp_path / "audit.jsonl")]
    assert [(r["subject"], r["role"], r["resource"]) for r in records] == [
        ("ivan", "invoker", "models"),
        ("anonymous", "-", "models"),
    ]
