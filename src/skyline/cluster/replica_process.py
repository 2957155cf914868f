"""`ReplicaProcess`: one replica as a local process group, its output read line by line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping


class ReplicaProcess:
    """``command`` run by ``/bin/sh -c`` in its own session, so that stopping it stops its children too."""

    def __init__(self, key: str, command: str, env: Mapping[str, str], *, workdir: str | None = None) -> None:
        self.key = key
        self.stopped_by_agent = False
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
        )
        self._reader = threading.Thread(target=self._read, name=f"logs-{key}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self) -> None:
        assert self._proc.stdout is not None
        with self._proc.stdout:  # closed at end of output
            for raw in self._proc.stdout:
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
        code = self._proc.poll()
        if code is None:
            return None
        self._reader.join(timeout=1.0)
        return code

    def stop(self, *, grace_s: float = 3.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        self.stopped_by_agent = True
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
