"""Pinning benchmark processes to cores, so that a server under test has a core the load does not share."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus``; the threads and processes they start later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended since the listing
            os.sched_setaffinity(int(task.name), cpus)


def pin_tree(pid: int, cpus: set[int]) -> None:
    """``pid`` and every process below it on ``cpus``."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        pin(process.pid, cpus)
