"""FastAPI glue: 401/403/413/422/429 as JSON, the rate limiter's arithmetic, secrets never echoed."""

# No `from __future__ import annotations`: the endpoints below take `Annotated[..., Depends(local)]`
# parameters, which FastAPI must evaluate at runtime (see skyline.security.http).

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from skyline.errors import ConfigError, NotFoundError, OverloadedError
from skyline.security.http import RateLimiter, install_error_handlers, require
from skyline.security.rbac import Principal, authorize
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.unit


class JobIn(BaseModel):
    name: str
    gpus: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(tmp_path: Path, limiter: RateLimiter | None = None) -> tuple[TestClient, TokenAuthority]:
    authority = TokenAuthority(tmp_path / "tokens.json")
    app = FastAPI()
    install_error_handlers(app, max_body_bytes=1000)
    create_jobs = require(authority, "create", "jobs", limiter=limiter)

    @app.post("/jobs")
    def submit(job: JobIn, who: Annotated[Principal, Depends(create_jobs)]) -> dict[str, str]:
        return {"name": job.name, "owner": who.subject}

    @app.delete("/jobs/{owner}")
    def delete(
        owner: str, who: Annotated[Principal, Depends(require(authority, "delete", "jobs"))]
    ) -> dict[str, str]:
        authorize(who, "delete", "jobs", owner=owner)
        return {"deleted": owner}

    @app.get("/missing")
    def missing() -> None:
        raise NotFoundError("no model 'x'; list models with GET /models")

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("secret internals")

    return TestClient(app, raise_server_exceptions=False), authority


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_missing_and_bad_tokens_get_401_with_a_challenge_and_never_echo_the_token(tmp_path: Path) -> None:
    client, authority = build(tmp_path)
    token = authority.issue("alice", "operator")
    for headers in (
        {},
        {"Authorization": "Basic YWxhZGRpbjpvcGVu"},
        bearer("sky_0123456789ab_guess"),
        bearer(token + "x"),
    ):
        response = client.post("/jobs", json={"name": "a"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert set(response.json()) == {"error"}
        assert token not in response.text


def test_role_and_ownership_denials_get_403_and_allowed_calls_pass(tmp_path: Path) -> None:
    client, authority = build(tmp_path)
    viewer, operator = authority.issue("vera", "viewer"), authority.issue("otto", "operator")
    denied = client.post("/jobs", json={"name": "a"}, headers=bearer(viewer))
    assert denied.status_code == 403 and "may not create jobs" in denied.json()["error"]
    assert "www-authenticate" not in denied.headers
    assert client.post("/jobs", json={"name": "a"}, headers=bearer(operator)).json() == {
        "name": "a",
        "owner": "otto",
    }
    assert client.delete("/jobs/otto", headers=bearer(operator)).status_code == 200
    assert client.delete("/jobs/someone-else", headers=bearer(operator)).status_code == 403


def test_validation_errors_are_422_json_without_the_input(tmp_path: Path) -> None:
    client, authority = build(tmp_path)
    token = authority.issue("alice", "operator")
    response = client.post("/jobs", json={"name": "a", "gpus": "many-secret-value"}, headers=bearer(token))
    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid request: body.gpus")
    assert "many-secret-value" not in response.text
    malformed = client.post(
        "/jobs", content=b"{nope", headers={**bearer(token), "content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "error" in malformed.json()


def test_oversized_bodies_are_413_by_header_and_by_chunked_stream(tmp_path: Path) -> None:
    client, authority = build(tmp_path)
    token = authority.issue("alice", "operator")
    big = {"name": "x" * 2000}
    assert client.post("/jobs", json=big, headers=bearer(token)).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    streamed = client.post(
        "/jobs", content=chunks(), headers={**bearer(token), "content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "limit of 1000 bytes" in streamed.json()["error"]
    small = client.post(
        "/jobs",
        content=iter([b'{"name":', b' "ok"}']),
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert small.status_code == 200
    bad_length = client.post("/jobs", content=b"{}", headers={**bearer(token), "content-length": "abc"})
    assert bad_length.status_code == 400


def test_skyline_errors_map_to_their_status_and_bugs_to_a_bare_500(tmp_path: Path) -> None:
    client, _ = build(tmp_path)
    assert client.get("/missing").status_code == 404
    assert client.get("/missing").json() == {"error": "no model 'x'; list models with GET /models"}
    bug = client.get("/bug")
    assert bug.status_code == 500 and bug.json() == {"error": "internal server error"}
    assert client.get("/no-such-route").json() == {"error": "Not Found"}


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    clock = Clock()
    client, authority = build(tmp_path, RateLimiter(rate_per_s=1.0, burst=2, clock=clock))
    token, other = authority.issue("alice", "operator"), authority.issue("bob", "operator")
    codes = [client.post("/jobs", json={"name": "a"}, headers=bearer(token)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.post("/jobs", json={"name": "a"}, headers=bearer(token))
    assert limited.headers["retry-after"] == "1" and "rate limit" in limited.json()["error"]
    assert client.post("/jobs", json={"name": "a"}, headers=bearer(other)).status_code == 200  # per token
    clock.now += 1.0
    assert client.post("/jobs", json={"name": "a"}, headers=bearer(token)).status_code == 200


def test_rate_limiter_refills_at_its_rate_and_bounds_memory() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=clock, max_keys=10)
    for _ in range(3):
        limiter.check("t")
    with pytest.raises(OverloadedError) as refused:
        limiter.check("t")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5  # 2/s × 0.5 s = one request back
    limiter.check("t")
    for key in range(100):
        limiter.check(f"k{key}")
    assert len(limiter._buckets) <= 11
    with pytest.raises(ConfigError):
        RateLimiter(rate_per_s=0, burst=1)


def test_a_typo_in_require_fails_when_the_app_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown action"):
        require(TokenAuthority(tmp_path / "t.json"), "write", "jobs")
