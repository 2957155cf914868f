"""The control plane over real TLS on 127.0.0.1: HTTPS server, an agent and clients verifying with --ca."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.errors import ConfigError, UnavailableError
from skyline.security.tls import generate_self_signed
from skyline.testing.cluster import CLI, AgentProcess, wait_until

pytestmark = pytest.mark.integration


@dataclass
class TlsEnv:
    server: ServerThread
    admin: str
    cert: Path
    folder: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEnv]:
    folder = tmp_path_factory.mktemp("cluster-tls")
    cert, key = generate_self_signed(folder / "cert.pem", folder / "key.pem", hosts=("127.0.0.1",))
    config = ServerConfig(
        state_dir=folder / "state", port=0, tls_cert=cert, tls_key=key,
        control=ControlConfig(tick_s=0.2, lost_after_s=5.0),
    )  # fmt: skip
    server = ServerThread(config).start()
    authority = server.built.authority
    agent = AgentProcess(
        server.url, authority.issue("agent-tls", "agent"), "tls-node", log_dir=folder, ca=cert
    )
    try:
        yield TlsEnv(server, authority.bootstrap_admin() or "", cert, folder)
    finally:
        agent.stop()
        server.stop()


def test_the_server_speaks_https_and_an_agent_joined_with_ca_runs_a_job(tls: TlsEnv) -> None:
    assert tls.server.url.startswith("https://127.0.0.1:")
    with ClusterClient(tls.server.url, tls.admin, ca_path=tls.cert) as admin:
        wait_until(lambda: [n for n in admin.nodes() if n["status"] == "alive"], timeout_s=30)
        job = admin.submit({"command": "echo over tls"})
        done = admin.wait(job["id"], timeout_s=30)
        assert done["status"] == "succeeded"
        assert [ln["line"] for ln in admin.logs(job["id"])["lines"]] == ["over tls"]


def test_a_client_without_the_ca_refuses_the_server(tls: TlsEnv) -> None:
    with ClusterClient(tls.server.url, tls.admin) as unverified, pytest.raises(UnavailableError) as err:
        unverified.nodes()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_plain_http_gets_no_answer_from_the_tls_port(tls: TlsEnv) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(tls.server.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_the_job_cli_verifies_with_ca(tls: TlsEnv) -> None:
    import subprocess

    base = [*CLI, "node", "list", "--server", tls.server.url, "--token", tls.admin]
    ok = subprocess.run([*base, "--ca", str(tls.cert)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "tls-node" in ok.stdout
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") or refused.stdout.startswith("error: ")


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    cert, _ = generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ConfigError, match="both"):
        ServerConfig(state_dir=tmp_path, tls_cert=cert)
    with pytest.raises(ConfigError, match="https"):
        ClusterClient("http://127.0.0.1:1", "t", ca_path=cert)
