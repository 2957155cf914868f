"""`LocalAgent`: the node agent `skyline cluster up` runs on its own machine, and owns.

It runs as a separate process in its own session (so that it and its replicas outlive a SIGKILL of the
server, keep their jobs running and reattach), recorded in ``state_dir/agent.pid``. A server that finds
that agent still running adopts it instead of starting a second one; whichever server instance started
it, a clean stop of the server stops it: SIGTERM (the agent stops its replicas and reports them), then
SIGKILL of its whole process group if it will not go.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skyline.errors import ConfigError

PIDFILE = "agent.pid"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalAgentConfig:
    """The local agent: its heartbeat period and its name (``local``)."""

    heartbeat_s: float = 1.0
    name: str = "local"

    def __post_init__(self) -> None:
        if not 0.05 <= self.heartbeat_s <= 60:
            raise ConfigError(f"--heartbeat-s must be between 0.05 and 60 seconds, got {self.heartbeat_s}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _is_agent(pid: int) -> bool:
    """Whether ``pid`` is a running skyline agent (a stale pid file may name a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"skyline.cli.app" in args and b"agent" in args and _alive(pid)


class LocalAgent:
    """Start (or adopt) the local agent; `stop` ends it and the replicas it runs."""

    def __init__(self, pid: int, pidfile: Path, *, process: subprocess.Popen[bytes] | None, adopted: bool):
        self.pid = pid
        self.pidfile = pidfile
        self.adopted = adopted
        self._process = process  # None when adopted: another instance of the server started it

    @classmethod
    def start(
        cls,
        state_dir: Path,
        url: str,
        mint_token: Callable[[], str],
        config: LocalAgentConfig,
        *,
        ca: Path | None = None,
    ) -> LocalAgent:
        """Adopt the agent an earlier server left running (SIGKILL restart), else start one with a token
        from ``mint_token`` (called only then: an adopted agent keeps the token it was started with)."""
        pidfile = state_dir / PIDFILE
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if _is_agent(pid):
                return cls(pid, pidfile, process=None, adopted=True)
        command = [sys.executable, "-m", "skyline.cli.app", "agent", "join", "--server", url]
        command += ["--heartbeat-s", str(config.heartbeat_s), "--name", config.name]
        if ca is not None:
            command += ["--ca", str(ca)]
        with (state_dir / "agent.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                env={**os.environ, "SKYLINE_TOKEN": mint_token()},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg takes its replicas along
            )
        pidfile.write_text(str(process.pid))
        return cls(process.pid, pidfile, process=process, adopted=False)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL its process group; forget the pid file."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not self._wait(timeout_s):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self._wait(timeout_s)
        self.pidfile.unlink(missing_ok=True)

    def _wait(self, timeout_s: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout_s  # not our child: poll until it is gone
        while _alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
