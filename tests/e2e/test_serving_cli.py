"""`skyline serve pack`, `skyline serve` and `skyline bench serve` as a user runs them (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from skyline.serving.samples import write_mlp_onnx
from skyline.serving.server import free_port

pytestmark = pytest.mark.e2e


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=120
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_pack_serve_and_bench(tmp_path: Path) -> None:
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
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "skyline.cli.app", "serve", "--repo", str(repo), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server)
        out = tmp_path / "bench.json"
        bench = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--concurrency", "4", "--duration", "1.5",
            "--json", str(out),
        )  # fmt: skip
        assert bench.returncode == 0, bench.stderr
        assert bench.stdout == ""
        result = json.loads(out.read_text())
        for key in ("throughput_per_s", "latency_p50_ms", "latency_p99_ms", "errors", "batch_size_mean"):
            assert key in result
        assert result["errors"] == 0 and result["requests"] > 0 and result["batch_size_mean"] >= 1
        open_loop = skyline(
            "bench", "serve", "--url", url, "--model", "mlp", "--duration", "1", "--rate", "50"
        )
        assert open_loop.returncode == 0 and "throughput_per_s" in open_loop.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve",), "--repo"),
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
