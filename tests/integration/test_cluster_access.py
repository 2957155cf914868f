"""Who may do what on the control plane (role × endpoint), and schemathesis finds no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread

pytestmark = pytest.mark.integration


@dataclass
class Access:
    url: str
    tokens: dict[str, str]
    alices_job: str


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Access]:
    folder = tmp_path_factory.mktemp("access")
    config = ServerConfig(state_dir=folder, port=0, control=ControlConfig(tick_s=0.5, lost_after_s=30))
    with ServerThread(config) as server:
        authority = server.built.authority
        tokens = {
            "admin": authority.bootstrap_admin() or "",
            "alice": authority.issue("alice", "operator"),
            "bob": authority.issue("bob", "operator"),
            "viewer": authority.issue("carol", "viewer"),
            "agent": authority.issue("agent-1", "agent"),
            "malformed": "not-a-token",
            "unknown": "sky_0123456789ab_forged-secret",
        }
        response = httpx.post(
            server.url + "/v1/jobs",
            json={"command": "sleep 1"},
            headers={"Authorization": f"Bearer {tokens['alice']}"},
        )
        yield Access(server.url, tokens, response.json()["id"])


NODE = {"id": "node-x", "cpus": 1, "memory_mib": 512}
BEAT = {"cpu_percent": 1.0, "memory_percent": 1.0}
# (method, path, body, {who: expected status}); "none" sends no token. {job} is alice's job.
MATRIX = [
    (
        "POST",
        "/v1/jobs",
        {"command": "true"},
        {"admin": 201, "alice": 201, "viewer": 403, "agent": 403, "none": 401},
    ),
    ("GET", "/v1/jobs", None, {"admin": 200, "bob": 200, "viewer": 200, "none": 401, "malformed": 401}),
    ("GET", "/v1/jobs/{job}", None, {"alice": 200, "bob": 403, "viewer": 200, "admin": 200, "unknown": 401}),
    ("GET", "/v1/jobs/{job}/logs", None, {"alice": 200, "bob": 403, "viewer": 200, "none": 401}),
    ("POST", "/v1/jobs/{job}/cancel", None, {"bob": 403, "viewer": 403, "agent": 403, "none": 401}),
    ("POST", "/v1/nodes", NODE, {"agent": 201, "admin": 201, "alice": 403, "viewer": 403, "none": 401}),
    ("POST", "/v1/nodes/node-x/heartbeat", BEAT, {"agent": 200, "alice": 403, "viewer": 403, "none": 401}),
    ("GET", "/v1/nodes", None, {"viewer": 200, "alice": 200, "agent": 200, "none": 401}),
    ("GET", "/v1/nodes/node-x/metrics", None, {"viewer": 200, "agent": 200, "none": 401}),
    ("GET", "/metrics", None, {"viewer": 200, "admin": 200, "none": 401}),
    (
        "POST",
        "/v1/tokens",
        {"subject": "x", "role": "viewer"},
        {"admin": 201, "alice": 403, "agent": 403, "none": 401},
    ),
]
CASES = [(m, p, b, who, code) for m, p, b, expected in MATRIX for who, code in expected.items()]


@pytest.mark.parametrize(("method", "path", "body", "who", "expected"), CASES)
def test_role_by_endpoint(
    access: Access, method: str, path: str, body: dict[str, object] | None, who: str, expected: int
) -> None:
    headers = {} if who == "none" else {"Authorization": f"Bearer {access.tokens[who]}"}
    response = httpx.request(
        method, access.url + path.format(job=access.alices_job), json=body, headers=headers
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["error"]
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_operator_cancels_its_own_job_and_lists_only_its_own(access: Access) -> None:
    alice = {"Authorization": f"Bearer {access.tokens['alice']}"}
    bob = {"Authorization": f"Bearer {access.tokens['bob']}"}
    httpx.post(access.url + "/v1/jobs", json={"command": "true"}, headers=bob)
    assert {j["owner"] for j in httpx.get(access.url + "/v1/jobs", headers=bob).json()} == {"bob"}
    job = httpx.post(access.url + "/v1/jobs", json={"command": "sleep 5"}, headers=alice).json()
    response = httpx.post(access.url + f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert httpx.post(access.url + f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 409


def test_the_openapi_spec_lists_every_route(access: Access) -> None:
    spec = httpx.get(access.url + "/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/nodes", "/v1/nodes/{node_id}/heartbeat", "/metrics"} <= set(
        spec["paths"]
    )


def test_schemathesis_finds_no_server_errors(access: Access) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(access.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {access.tokens['admin']}"}
    failures: list[str] = []
    calls: list[int] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        strategy = op.as_strategy()

        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers, timeout=10)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        given(strategy)(check)()
    assert len(calls) > 50  # every operation was exercised (a bounded number of examples each)
    assert not failures, failures
