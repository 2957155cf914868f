"""The console's access rules over HTTP (no browser): sign-in cookie, CSRF and origin checks, the same
permission table as the API, no secret in any page, the Models and Audit views, the live stream."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyline.cluster.console.session import COOKIE, safe_next
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import Built, ServerConfig, build
from skyline.cluster.spec import JobRequest
from skyline.core import Resources, Tier
from skyline.security.audit import AuditLog
from skyline.security.signing import generate_signing_keys, sign_directory
from skyline.serving.repository import ModelRepository
from skyline.serving.tensors import TensorSpec

pytestmark = pytest.mark.unit


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Built]:
    config = ServerConfig(
        state_dir=tmp_path / "state", audit_log=tmp_path / "audit.jsonl",
        control=ControlConfig(tick_s=0.2, lost_after_s=5.0),
    )  # fmt: skip
    built = build(config)
    yield built
    _close(built)


def _close(built: Built) -> None:
    built.services.stop()  # releases the gateway's socket (never started here)
    built.control.executor.close()
    built.store.close()


def _signed_in(built: Built, role: str, subject: str | None = None) -> tuple[TestClient, str]:
    token = built.authority.issue(subject or role, role)
    client = TestClient(built.app, follow_redirects=False)
    answer = client.post("/ui/login", data={"token": token, "next": "/ui/jobs"})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs"
    return client, token


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', html)
    assert found is not None
    return found.group(1)


def test_sign_in_sets_an_httponly_strict_cookie_and_bad_tokens_say_why_without_echo(built: Built) -> None:
    client = TestClient(built.app, follow_redirects=False)
    assert client.get("/ui/jobs").headers["location"] == "/ui/login?next=/ui/jobs"
    _, token = _signed_in(built, "viewer")
    answer = TestClient(built.app, follow_redirects=False).post("/ui/login", data={"token": token})
    cookie = answer.headers["set-cookie"]
    assert all(part in cookie for part in ("HttpOnly", "SameSite=strict", "Path=/ui"))
    cross_site = client.post("/ui/login", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers
    wrong = client.post("/ui/login", data={"token": "sky_0123456789ab_not-the-secret"})
    assert (
        wrong.status_code == 401
        and "unknown bearer token" in wrong.text
        and "not-the-secret" not in wrong.text
    )
    revoked_id = token.split("_")[1]
    built.authority.revoke(revoked_id)
    client.cookies.set(COOKIE, token, path="/ui")
    assert client.get("/ui/jobs").status_code == 303  # a revoked token ends the session at once


def test_writes_need_this_sessions_csrf_token_and_the_same_origin(built: Built) -> None:
    client, _ = _signed_in(built, "operator", "olivia")
    csrf = _csrf(client.get("/ui/jobs").text)
    form = {"command": "echo hi", "cpus": "0.5"}
    assert client.post("/ui/jobs", data=form).status_code == 403
    assert client.post("/ui/jobs", data={**form, "csrf": "0" * 64}).status_code == 403
    evil = client.post("/ui/jobs", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    made = client.post("/ui/jobs", data={**form, "csrf": csrf}, headers={"Origin": "http://testserver"})
    assert made.status_code == 303
    job_id = made.headers["location"].rsplit("/", 1)[1]
    assert built.store.jobs.get(job_id).owner == "olivia"
    bad = client.post("/ui/jobs", data={"command": "x", "cpus": "-1", "csrf": csrf})
    assert bad.status_code == 422 and "cpus" in bad.text  # the API's own validation, shown in the form


def test_the_permission_table_decides_what_each_role_sees_and_does(built: Built, tmp_path: Path) -> None:
    mine, _ = built.store.jobs.submit(JobRequest(command="sleep 1"), owner="olivia")
    theirs, _ = built.store.jobs.submit(JobRequest(command="sleep 1"), owner="oscar")
    viewer, _ = _signed_in(built, "viewer", "victor")
    page = viewer.get(f"/ui/jobs/{mine.id}").text
    assert "cancel-job" not in page and "Submit a job" not in viewer.get("/ui/jobs").text
    csrf = _csrf(page)
    assert viewer.post(f"/ui/jobs/{mine.id}/cancel", data={"csrf": csrf}).status_code == 403
    assert viewer.post("/ui/jobs", data={"command": "true", "csrf": csrf}).status_code == 403
    assert viewer.get("/ui/audit").status_code == 403 and "Audit" not in viewer.get("/ui/").text
    operator, _ = _signed_in(built, "operator", "olivia")
    listed = operator.get("/ui/jobs?user=oscar").text  # an operator sees only its own jobs, as in the API
    assert mine.id in listed and theirs.id not in listed
    assert operator.get(f"/ui/jobs/{theirs.id}").status_code == 403
    assert "cancel-job" in operator.get(f"/ui/jobs/{mine.id}").text
    csrf = _csrf(operator.get("/ui/jobs").text)
    assert operator.post(f"/ui/jobs/{theirs.id}/cancel", data={"csrf": csrf}).status_code == 403
    assert operator.post(f"/ui/jobs/{mine.id}/cancel", data={"csrf": csrf}).status_code == 303
    assert str(built.store.jobs.get(mine.id).status) == "cancelled"
    audited = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    cancels = [(r["subject"], r["result"]) for r in audited if r["action"] == "POST /ui/jobs/{job_id}/cancel"]
    assert cancels == [("victor", "403"), ("olivia", "403"), ("olivia", "303")]  # refused attempts too


def test_no_secret_is_ever_rendered(built: Built) -> None:
    job, _ = built.store.jobs.submit(
        JobRequest(command="train.py", env={"API_KEY": "hunter2-secret-value"}), owner="ada"
    )
    client, token = _signed_in(built, "admin", "ada")
    client.post("/ui/jobs", data={"command": "true", "csrf": _csrf(client.get("/ui/jobs").text)})
    pages = [
        "/ui/",
        "/ui/jobs",
        f"/ui/jobs/{job.id}",
        "/ui/nodes",
        "/ui/scheduling",
        "/ui/models",
        "/ui/audit",
    ]
    for path in pages:
        html = client.get(path).text
        assert token not in html and token.split("_", 2)[2] not in html and "hunter2" not in html, path
        assert client.get(path).headers["content-security-policy"].startswith("default-src 'self'")


def test_a_node_without_a_sample_yet_shows_dashes_not_an_error(built: Built) -> None:
    # An agent that has just joined has no utilization sample: the nodes table (and its live
    # refresh) must render it, not answer 500 (CI saw this when the first sample came late).
    capacity = Resources.of(cpus=1, memory_mib=512)
    built.store.nodes.register("fresh", tier=Tier.EDGE, address="127.0.0.1", capacity=capacity, labels={})
    client, _ = _signed_in(built, "viewer")
    for headers in ({}, {"HX-Request": "true"}):
        answer = client.get("/ui/nodes", headers=headers)
        assert answer.status_code == 200
        row = re.search(r'<tr data-node-row="fresh".*?</tr>', answer.text, re.S)
        assert row is not None
        assert re.findall(r'data-util="(\w+)">([^<]*)<', row.group(0)) == [
            ("cpu", "–"),
            ("memory", "–"),
            ("gpu", "–"),
        ]


def test_safe_next_stays_inside_the_console() -> None:
    assert safe_next("/ui/jobs?status=failed") == "/ui/jobs?status=failed"
    for hostile in ("https://evil.example/ui/", "//evil.example/ui/", "/v1/tokens", "/ui\\..", None, ""):
        assert safe_next(hostile) == "/ui/"


def _model(root: Path, name: str, version: int) -> Path:
    source = root.parent / f"{name}-{version}.pt2"
    source.write_bytes(b"weights" * 100)
    spec = (TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),)
    ModelRepository(root).add(source, name=name, version=version, inputs=spec, outputs=spec)
    return root / name / str(version)


def test_models_view_shows_each_versions_signature_state(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    private, public = generate_signing_keys(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    sign_directory(_model(repo, "mlp", 1), private, version=1)
    tampered = _model(repo, "mlp", 2)
    sign_directory(tampered, private, version=2)
    (tampered / "model.pt2").write_bytes(b"other" * 100)
    _model(repo, "mlp", 3)
    config = ServerConfig(state_dir=tmp_path / "state", model_repository=repo, trusted_keys=(public,))
    built = build(config)
    try:
        client, _ = _signed_in(built, "viewer")
        rows = re.findall(r"<tr>(.*?)</tr>", client.get("/ui/models").text, flags=re.S)[1:]
        text = [re.sub(r"<[^>]+>", " ", r) for r in rows]
        assert "unsigned" in text[0] and " 3 " in text[0]
        assert "invalid" in text[1] and "was modified" in text[1]
        assert "verified" in text[2] and "k.pub.pem" in text[2]
    finally:
        _close(built)


def test_audit_view_verifies_the_chain_and_names_a_broken_one(built: Built, tmp_path: Path) -> None:
    client, _ = _signed_in(built, "admin")
    assert "Hash chain verified" in client.get("/ui/audit").text  # the sign-in itself was audited
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append(subject="ada", role="admin", action="POST /v1/jobs", resource="jobs", result="201")
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["subject"] = "mallory"
    path.write_text("\n".join([json.dumps(record, sort_keys=True), *lines[1:]]) + "\n")
    page = client.get("/ui/audit").text
    assert "Hash chain broken" in page and "hash mismatch" in page


def test_the_live_stream_gives_an_operator_only_its_own_jobs(built: Built) -> None:
    client, _ = _signed_in(built, "operator", "olivia")
    built.console.feed.lifetime_s = 1.0  # the stream then ends by itself (the test client cannot cut it)
    mine, _ = built.store.jobs.submit(JobRequest(command="true"), owner="olivia")
    theirs, _ = built.store.jobs.submit(JobRequest(command="true"), owner="oscar")
    with client.stream("GET", "/ui/events?topics=jobs&last_event=0") as stream:
        text = "".join(stream.iter_text())
    payload = json.loads(re.search(r"event: jobs\ndata: (.*)\n", text).group(1))  # type: ignore[union-attr]
    assert [c["job_id"] for c in payload["changes"]] == [mine.id]
    assert theirs.id not in text


def test_services_show_on_overview_scheduling_and_models(built: Built) -> None:
    from skyline.cluster.console.services_view import replica_chart
    from skyline.cluster.service_spec import service_from_mapping
    from skyline.core import DemandForecast

    spec = service_from_mapping({
        "name": "mlp", "command": "sleep 100", "replicas": 2, "min_replicas": 1, "max_replicas": 4,
        "model": "mlp:1", "autoscale": {"mode": "predictive", "target_rps_per_replica": 10},
    })  # fmt: skip
    record = built.store.services.create(spec, owner="olivia")
    built.store.services.add_decision(
        record.id, mode="predictive", observed=40.0, forecast=55.5, predictive=3, reactive=2, current=2,
        target=3, lead_s=30.0, reason="forecast",
    )  # fmt: skip
    operator, _ = _signed_in(built, "operator", "olivia")
    assert "mlp" in operator.get("/ui/").text
    page = operator.get("/ui/scheduling").text
    assert "55.5" in page and "2 → 3" in page and "forecast" in page
    other, _ = _signed_in(built, "operator", "oscar")  # another operator's service is not listed
    assert "55.5" not in other.get("/ui/scheduling").text
    forecast = DemandForecast(
        series="service:mlp", start_s=100.0, step_s=10.0, point=(2.0, 3.0), quantiles={0.9: (3.0, 4.0)}
    )
    chart = replica_chart([{"at_s": 95.0, "current": 2, "target": 3}], forecast)
    assert chart["labels"][3] == "forecast P90" and chart["band"] == [3, 4]
    assert chart["rows"] == [
        [95.0, 2, 3, None, None],
        [110.0, None, None, 2.0, 3.0],
        [120.0, None, None, 3.0, 4.0],
    ]


def test_models_view_lists_the_edge_agents_the_cloud_knows(tmp_path: Path) -> None:
    from skyline.cli.cluster import edge_fleet
    from skyline.edge.cloud import fleet_path
    from skyline.edge.fleet import FleetStore

    repo = tmp_path / "repo"
    repo.mkdir()
    _model(repo, "digits", 1)
    fleet_path(repo).parent.mkdir(parents=True, exist_ok=True)
    store = FleetStore(fleet_path(repo))
    store.report(
        "edge-7", labels={"site": "lab"}, metrics={"uplink_queued": 42, "ready": True},
        models={"digits": {"version": 1, "stats": {}}},
    )  # fmt: skip
    store.close()
    built = build(
        ServerConfig(state_dir=tmp_path / "state", model_repository=repo, edge_fleet=edge_fleet(repo))
    )
    try:
        client, _ = _signed_in(built, "viewer")
        text = re.sub(r"<[^>]+>", " ", client.get("/ui/models").text)
        row = text[text.index("edge-7") :]
        assert "site=lab" in row and "digits v1" in row and " 42 " in row and " ok " in row
    finally:
        _close(built)


def test_a_job_no_node_could_ever_hold_is_refused_as_by_the_api(built: Built) -> None:
    from skyline.core import Resources, Tier

    built.store.nodes.register(
        "small",
        tier=Tier.DATACENTER,
        address="127.0.0.1",
        capacity=Resources.of(cpus=2, memory_mib=4096),
        labels={},
    )
    client, _ = _signed_in(built, "operator", "olivia")
    csrf = _csrf(client.get("/ui/jobs").text)
    refused = client.post("/ui/jobs", data={"command": "true", "cpus": "64", "csrf": csrf})
    assert refused.status_code == 422 and "can never run here" in refused.text
    assert built.store.jobs.find() == []


def test_console_settings_are_checked_when_the_server_is_built(tmp_path: Path) -> None:
    from skyline.cluster.console import ConsoleConfig
    from skyline.errors import ConfigError

    with pytest.raises(ConfigError, match="--model-repository"):
        ConsoleConfig(policy="fifo", model_repository=tmp_path / "nope")
    with pytest.raises(ConfigError, match="--trusted-key"):
        ConsoleConfig(policy="fifo", trusted_keys=(tmp_path / "missing.pem",))
    with pytest.raises(ConfigError, match="poll_s"):
        ConsoleConfig(policy="fifo", poll_s=0)
