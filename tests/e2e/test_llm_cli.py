"""`skyline llm serve`, `skyline llm generate` and `skyline bench llm` as a user runs them (real processes)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from skyline.core.net import free_port
from skyline.security.tls import client_ssl_context, generate_self_signed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def skyline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes], cert: Path, timeout_s: float = 300) -> None:
    context = client_ssl_context(cert)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1, context=context) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the server did not become ready")


def test_serve_generate_and_bench(tmp_path: Path) -> None:
    # No token flags: tokens are required and the first admin token is printed once; HTTPS only.
    cert, key = generate_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    printed = tmp_path / "serve.out"
    with printed.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.app", "llm", "serve", "--port", str(port), "--kv-blocks", "128",
             "--max-num-seqs", "4", "--threads", "1", "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        _wait_ready(url, server, cert)
        found = re.search(r"admin token \(shown once, store it now\): (sky_\S+)", printed.read_text())
        assert found and (tmp_path / ".skyline" / "tokens.json").exists(), printed.read_text()
        remote = ("--url", url, "--token", found.group(1), "--ca", str(cert))
        streamed = skyline("llm", "generate", "What is 2+2?", *remote, "--max-tokens", "8", "--temperature", "0",
                           "--stream", "--json", str(tmp_path / "answer.json"))  # fmt: skip
        assert streamed.returncode == 0, streamed.stderr
        answer = json.loads((tmp_path / "answer.json").read_text())
        assert (
            answer["text"]
            and answer["usage"]["completion_tokens"] <= 8
            and answer["finish_reason"] in ("stop", "length")
        )
        whole = skyline("llm", "generate", "What is 2+2?", *remote, "--max-tokens", "8", "--temperature", "0")
        assert (
            whole.returncode == 0
            and whole.stdout.strip() == streamed.stdout.strip() == answer["text"].strip()
        )
        trace = tmp_path / "trace.csv"
        trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,300,3\n"
                         "2023-11-16 18:17:04.5319600,120,2\n2023-11-16 18:17:09.0781490,110,27\n")  # fmt: skip
        for mode in (
            ("--concurrency", "2", "--duration", "2", "--prompt-tokens", "16"),
            ("--trace", str(trace), "--duration", "2"),
        ):
            bench = skyline("bench", "llm", *remote, *mode, "--max-tokens", "4",
                            "--json", str(tmp_path / "bench.json"))  # fmt: skip
            assert bench.returncode == 0, bench.stderr
            result = json.loads((tmp_path / "bench.json").read_text())
            assert result["completed"] >= 1 and result["errors"] == 0 and result["output_tokens_per_s"] > 0
        assert result["mode"] == "trace" and result["requests"] == 2  # the rows within 2 s of the first
        refused = skyline(
            "llm", "generate", "x", "--url", url, "--token", "sky_0123456789ab_wrong", "--ca", str(cert)
        )
        assert refused.returncode == 2 and refused.stderr.startswith("error: the server answered 401")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, printed.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("llm", "serve", "--quant", "int3", "--insecure-no-auth-local-only"), "quant"),
        (("llm", "serve", "--host", "0.0.0.0", "--insecure-no-auth-local-only"), "loopback"),
        (("llm", "serve", "--tls-cert", "missing.pem", "--tls-key", "missing.key"), "missing"),
        (("llm", "generate", "x", "--url", "http://127.0.0.1:9"), "cannot reach"),
        (("bench", "llm", "--url", "ftp://example"), "http"),
        (("bench", "llm", "--url", "http://127.0.0.1:9", "--rate", "2", "--trace", "t.csv"), "not both"),
        (("bench", "llm", "--url", "http://127.0.0.1:9", "--trace", "missing.csv"), "cannot read trace"),
        (("llm", "generate", "x", "--url", "http://127.0.0.1:9", "--quant", "int8"), "drop them"),
        (("llm", "generate", "x", "--token", "sky_0123456789ab_x"), "--url"),
        (("bench", "llm", "--url", "http://127.0.0.1:9", "--output-scale", "2"), "--trace"),
        (
            ("bench", "llm", "--url", "http://127.0.0.1:9", "--trace", "t.csv", "--prompt-tokens", "9"),
            "--trace",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = skyline(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr


def test_a_refused_serve_mints_no_token(tmp_path: Path) -> None:
    """The configuration is checked before an admin token is created and printed."""
    result = skyline("llm", "serve", "--max-num-seqs", "0", "--state", str(tmp_path / "state"), cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "state").exists(), result.stderr
    assert "sky_" not in result.stdout + result.stderr


def test_generate_with_the_transformers_engine_exits(tmp_path: Path) -> None:
    """The reference engine's background thread is stopped: the process ends once it has answered."""
    result = skyline(
        "llm",
        "generate",
        "Hi",
        "--engine",
        "transformers",
        "--max-tokens",
        "2",
    )
    assert result.returncode == 0, result.stderr


def test_generate_with_a_local_model(tmp_path: Path) -> None:
    result = skyline("llm", "generate", "Name a color.", "--max-tokens", "6", "--temperature", "0",
                     "--json", str(tmp_path / "out.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads((tmp_path / "out.json").read_text())
    assert answer["text"].strip() == result.stdout.strip() and answer["usage"]["completion_tokens"] <= 6
