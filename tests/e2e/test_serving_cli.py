"""`skyline serve pack`, `skyline serve` and `skyline bench serve` as a user runs them (real processes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from skyline.core.net import free_port
from skyline.security.tls import client_ssl_context, generate_self_signed
from skyline.security.tokens import TokenAuthority
from skyline.serving.samples import write_mlp_onnx

pytestmark = pytest.mark.e2e


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=120
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], cert: Path, timeout_s: float = 60) -> None:
    context = client_ssl_context(cert)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1, context=context) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def admin_token(printed: Path) -> str:
    found = re.search(r"admin token \(shown once, store it now\): (sky_\S+)", printed.read_text())
    assert found, printed.read_text()
    return found.group(1)


def test_pack_serve_and_bench(tmp_path: Path) -> None:
    # skyline serve with neither --tokens nor any flag: tokens are required, the first admin token is
    # printed once; --tls-cert/--tls-key serve HTTPS only, and the load client verifies with --ca.
    repo = tmp_path / "repo"
    packed = skyline(
        "serve", "pack", str(write_mlp_onnx(tmp_path / "mlp.onnx")), "--name", "mlp", "--version", "1",
        "--repo", str(repo), "--max-batch-size", "16", "--preferred-batch-size", "8",
        "--json", str(tmp_path / "manifest.json"),
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["batching"]["max_batch_size"] == 16 and manifest["inputs"][0]["shape"] == [-1, 16]
    assert manifest["batching"]["preferred_batch_sizes"] == [8]
    cert, key = generate_self_signed(tmp_path / "server.crt", tmp_path / "server.key")
    port, printed = free_port(), tmp_path / "server.out"
    with printed.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.app", "serve", "--repo", str(repo), "--port", str(port),
             "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{port}"
        wait_ready(url, server, cert)
        token = admin_token(printed)
        assert oct((repo / ".skyline" / "tokens.json").stat().st_mode & 0o777) == "0o600"
        anonymous = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--ca", str(cert), "--duration", "1"
        )
        assert anonymous.returncode == 2 and "401" in anonymous.stderr
        untrusted = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--token", token, "--duration", "1"
        )
        assert untrusted.returncode == 2 and "certificate verify failed" in untrusted.stderr
        out_json = tmp_path / "bench.json"
        bench = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--concurrency", "4", "--duration", "1.5",
            "--token", token, "--ca", str(cert), "--json", str(out_json),
        )  # fmt: skip
        assert bench.returncode == 0, bench.stderr
        assert bench.stdout == ""
        result = json.loads(out_json.read_text())
        for key_name in ("throughput_per_s", "latency_p50_ms", "latency_p99_ms", "errors", "batch_size_mean"):
            assert key_name in result
        assert result["errors"] == 0 and result["requests"] > 0 and result["batch_size_mean"] >= 1
        open_loop = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--duration", "1", "--rate", "50",
            "--token", token, "--ca", str(cert),
        )  # fmt: skip
        assert open_loop.returncode == 0 and "throughput_per_s" in open_loop.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    # The file remembers its bootstrap: a restart over it never prints another admin token.
    assert TokenAuthority(repo / ".skyline" / "tokens.json").bootstrap_admin() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve",), "--repo"),
        (("serve", "--repo", "{tmp}", "--insecure-no-auth-local-only", "--host", "0.0.0.0"), "loopback"),
        (("serve", "--repo", "{tmp}", "--tls-cert", "{tmp}/m.onnx"), "--tls-key"),
        (
            ("serve", "pack", "missing.onnx", "--name", "m", "--version", "1", "--repo", "{tmp}/r"),
            "does not exist",
        ),
        (
            ("serve", "pack", "{tmp}/m.onnx", "--name", "../x", "--version", "1", "--repo", "{tmp}/r"),
            "model name",
        ),
        (
            ("bench", "serve", "--url", "http://127.0.0.1:9", "--model", "m", "--duration", "1"),
            "cannot reach",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    write_mlp_onnx(tmp_path / "m.onnx")
    result = skyline(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == 2
    assert (
        result.stderr.startswith("error: ")
        and message in result.stderr
        and len(result.stderr.splitlines()) == 1
    )
