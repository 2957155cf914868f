"""`ReplicaProcess`: one replica as a local process group, its output read line by line.

Rank 0 of a multi-replica gang hosts torch's rendezvous on ``MASTER_PORT``; the control plane picked that
port without asking this node, so rank 0 checks it can bind it before running anything and otherwise ends
at once with `PORT_TAKEN_EXIT_CODE` and a line saying why (the job fails instead of hanging in rendezvous).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping

from skyline.core.net import port_is_bindable

PORT_TAKEN_EXIT_CODE = 98  # EADDRINUSE on Linux


def rendezvous_problem(env: Mapping[str, str]) -> str | None:
    """Why this replica must not start here: it is rank 0 of a gang and cannot bind ``MASTER_PORT``."""
    if env.get("RANK") != "0" or env.get("WORLD_SIZE", "1") in ("0", "1"):
        return None
    raw = env.get("MASTER_PORT", "")
    if raw.isdigit() and 0 < int(raw) < 65536 and port_is_bindable(int(raw)):
        return None
    return (
        f"skyline: rank 0 cannot host the rendezvous: MASTER_PORT {raw or '(unset)'} is in use (or invalid) "
        f"on this node; the command was not started (exit code {PORT_TAKEN_EXIT_CODE}). The control plane "
        "picks the port from its --master-ports range; resubmit the job, or widen or move that range."
    )


class ReplicaProcess:
    """``command`` run by ``/bin/sh -c`` in its own session, so that stopping it stops its children too."""

    def __init__(self, key: str, command: str, env: Mapping[str, str], *, workdir: str | None = None) -> None:
        self.key = key
        self.stopped_by_agent = False
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._refused: int | None = None
        problem = rendezvous_problem(env)
        if problem is not None:  # fail fast: the other ranks would wait for a rendezvous that never comes
            self._lines.append(problem)
            self._refused = PORT_TAKEN_EXIT_CODE
            return
        self._proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name=f"logs-{key}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int | None:
        """The shell's process id; None when the replica was refused before it started."""
        return None if self._proc is None else self._proc.pid

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:  # closed at end of output
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self._lines.append(line)

    def take_lines(self) -> list[str]:
        """Lines printed since the previous call."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def exit_code(self) -> int | None:
        """The exit code once the process ended and its output is fully read, else None."""
        if self._proc is None:
            return self._refused
        code = self._proc.poll()
        if code is None:
            return None
        self._reader.join(timeout=1.0)
        return code

    def stop(self, *, grace_s: float = 3.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        self.stopped_by_agent = True
        if self._proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while self._proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._proc.poll() is not None:
                break
        # children the shell left behind share its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=5)
