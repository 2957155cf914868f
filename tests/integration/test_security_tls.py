"""TLS: a real uvicorn server on 127.0.0.1 with a self-signed pair; clients verify the certificate."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from skyline.errors import ConfigError
from skyline.security.tls import client_ssl_context, generate_self_signed, uvicorn_ssl_kwargs

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = generate_self_signed(tmp_path / "server.crt", tmp_path / "server.key")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws="none", **uvicorn_ssl_kwargs(cert, key)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", cert
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_client_trusting_the_cert_connects_and_others_are_refused(
    tls_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, cert = tls_server
    response = httpx.get(f"{url}/health", verify=client_ssl_context(cert))
    assert response.json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", verify=client_ssl_context())  # system CAs do not know it
    other_cert, _ = generate_self_signed(tmp_path / "other.crt", tmp_path / "other.key")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", verify=client_ssl_context(other_cert))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url.replace("https", "http") + "/health")  # plain HTTP is not served


def test_hostname_is_checked(tmp_path: Path) -> None:
    cert, _ = generate_self_signed(tmp_path / "c.crt", tmp_path / "c.key", hosts=("example.internal",))
    context = client_ssl_context(cert)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_half_configured_tls_and_open_keys_are_config_errors(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path / "c.crt", tmp_path / "c.key")
    assert uvicorn_ssl_kwargs(None, None) == {}
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        uvicorn_ssl_kwargs(cert, None)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        uvicorn_ssl_kwargs(cert, key)
