"""Helpers for control-plane tests: agents as real processes, a server as a real process, waiting."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "skyline.cli.app"]


def wait_until(condition: Callable[[], Any], *, timeout_s: float = 30.0, poll_s: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)


class AgentProcess:
    """``skyline agent join`` in a subprocess (its own session, so a kill takes its replicas along)."""

    def __init__(
        self, server: str, token: str, name: str, *, log_dir: Path, cpus: float = 2, **flags: Any
    ) -> None:
        args = [*CLI, "agent", "join", "--server", server, "--name", name, "--heartbeat-s", "0.2"]
        args += ["--cpus", str(cpus), "--memory-mib", "4096", "--gpus", "0"]
        for flag, value in flags.items():
            args += [f"--{flag.replace('_', '-')}", str(value)]
        self.name = name
        self.log_path = log_dir / f"agent-{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, env={**os.environ, "SKYLINE_TOKEN": token}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the agent and everything it started: the node is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerProcess:
    """``skyline cluster up`` in a subprocess; ``url`` and ``admin_token`` parsed from its output."""

    def __init__(self, state_dir: Path, *, port: int = 0, extra: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.out_path = state_dir.parent / f"{state_dir.name}-server-{time.monotonic_ns()}.out"
        # Any free port for the services' gateway too: its default (8480) may be taken on a shared machine.
        args = [
            *CLI,
            "cluster",
            "up",
            "--state-dir",
            str(state_dir),
            "--port",
            str(port),
            "--gateway-port",
            "0",
        ]
        args += extra
        with self.out_path.open("wb") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        text = wait_until(self._started, timeout_s=60)
        self.url: str = re.search(r"http://[0-9.]+:\d+", text).group(0)  # type: ignore[union-attr]
        found = re.search(r"sky_[A-Za-z0-9_-]+", text)
        self.admin_token: str | None = found.group(0) if found else None

    def _started(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"cluster up exited: {self.out_path.read_text()}")
        text = self.out_path.read_text()
        return text if "control plane on" in text and self._answers(text) else None

    @staticmethod
    def _answers(text: str) -> bool:
        import httpx

        match = re.search(r"http://[0-9.]+:\d+", text)
        try:
            return match is not None and httpx.get(match.group(0) + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def sigkill(self) -> None:
        """Kill the server process alone (its local agent lives on, as after a real crash)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def kill_local_agent(state_dir: Path) -> None:
    """End an agent a `cluster up` left running (after a SIGKILL of the server), by its pidfile."""
    pidfile = state_dir / "agent.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
