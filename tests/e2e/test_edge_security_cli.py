"""`skyline edge cloud --tls-cert --tls-key --audit-log --rate-limit` as a user runs it: a real process on
127.0.0.1 that an edge client with the certificate reaches, and that audits the edge's writes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from skyline.edge.cloud_client import CloudClient
from skyline.errors import UnavailableError
from skyline.security.audit import verify_audit_log
from skyline.security.tls import client_ssl_context, generate_self_signed
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_edge_cloud_serves_https_audits_and_rate_limits(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path / "cloud.crt", tmp_path / "cloud.key")
    tokens, log, port = tmp_path / "tokens.json", tmp_path / "audit.jsonl", _free_port()
    edge_token = TokenAuthority(tokens).issue("edge-1", "edge")
    args = [
        "edge",
        "cloud",
        "--port",
        str(port),
        "--tokens",
        str(tokens),
        "--ingest",
        str(tmp_path / "in.db"),
        "--repository",
        str(tmp_path / "repo"),
    ]
    args += ["--tls-cert", str(cert), "--tls-key", str(key), "--audit-log", str(log), "--rate-limit", "1"]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.app", *args],
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", verify=client_ssl_context(cert), timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, "edge cloud did not start within 60 s"
                time.sleep(0.2)
        client = CloudClient(url, token=edge_token, timeout_s=30, ca=cert)
        client.telemetry("edge-1", {"infer_count": 1})
        client.telemetry("edge-1", {"infer_count": 2})  # the burst of two seconds' worth
        with pytest.raises(UnavailableError, match="429"):
            client.telemetry("edge-1", {"infer_count": 3})
        client.close()
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            httpx.get(url + "/health", timeout=5)  # system CAs only: refused
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert verify_audit_log(log).records == 3  # two accepted reports and the rate-limited one
    assert edge_token not in log.read_text()
