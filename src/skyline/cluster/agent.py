"""`NodeAgent`: registers a node, heartbeats its utilization, runs the replicas placed on it.

The server's answer to each heartbeat is the full set of replicas this node must run; the agent starts
the missing ones and stops the rest (idempotent, so a restarted server or agent converges). What its
replicas did (started, exited with a code) rides on the next heartbeat, sent at once when something
changed; reports and log lines are kept and retried until the server accepts them: a server restart
loses nothing.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from skyline.cluster.client import ClusterClient
from skyline.cluster.monitor import Monitor
from skyline.cluster.records import MAX_REPORTS
from skyline.cluster.replica_process import ReplicaProcess
from skyline.core import Tier
from skyline.errors import ConfigError, ConflictError, SkylineError, UnavailableError

log = logging.getLogger("skyline.agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Who the node is and what it offers; ``cpus``/``memory_mib``/``gpus``/``gpu_type`` override what was
    measured (``gpu_type``: the GPU model jobs ask for by name, e.g. ``v100``; default: NVML's name)."""

    name: str = ""
    tier: Tier = Tier.DATACENTER
    address: str = "127.0.0.1"
    heartbeat_s: float = 1.0
    cpus: float | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    gpu_type: str | None = None
    workdir: str | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.heartbeat_s <= 60:
            raise ConfigError(f"heartbeat_s must be between 0.05 and 60 seconds, got {self.heartbeat_s}")
        if self.cpus is not None and self.cpus <= 0:
            raise ConfigError(f"--cpus must be > 0, got {self.cpus}")
        if self.gpu_type is not None and (not self.gpu_type or "|" in self.gpu_type or " " in self.gpu_type):
            raise ConfigError(
                f"--gpu-type must be one model name without spaces or '|', got {self.gpu_type!r}"
            )
        if self.gpu_type is not None and self.gpus == 0:
            raise ConfigError("--gpu-type names the model of the node's GPUs, but --gpus is 0")
        object.__setattr__(self, "name", self.name or socket.gethostname())
        object.__setattr__(self, "tier", Tier.parse(str(self.tier)))


class NodeAgent:
    """One node's agent. `run` loops until `stop` is called, then stops every replica it runs."""

    def __init__(self, client: ClusterClient, config: AgentConfig) -> None:
        self.client = client
        self.config = config
        self.monitor = Monitor()
        self.processes: dict[str, ReplicaProcess] = {}
        self._pending_reports: list[dict[str, Any]] = []  # replica reports, sent with the next beat
        self._pending_logs: list[dict[str, Any]] = []
        self._done: set[str] = set()  # ended here: never started again, even if a report is still queued
        self._stop = threading.Event()
        self._registered = False

    @property
    def node_id(self) -> str:
        return self.config.name

    def registration(self) -> dict[str, Any]:
        measured = self.monitor.capacity()
        c = self.config
        gpus = c.gpus if c.gpus is not None else measured.gpus
        return {
            "id": c.name,
            "tier": str(c.tier),
            "address": c.address,
            "cpus": c.cpus if c.cpus is not None else measured.cpus,
            "memory_mib": c.memory_mib if c.memory_mib is not None else measured.memory_mib,
            "gpus": gpus,
            "gpu_type": (c.gpu_type or measured.gpu_type) if gpus else None,
        }

    def stop(self) -> None:
        self._stop.set()

    @contextmanager
    def in_background(self) -> Iterator[NodeAgent]:
        """`run` on a daemon thread for the ``with`` block; on exit stopped (its replicas' processes stopped
        and reported), joined, and its client closed."""
        thread = threading.Thread(target=self.run, name=f"agent-{self.config.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(timeout=30)
            self.client.close()

    def run_in_foreground(self) -> None:
        """`run` on the main thread of a foreground command: SIGTERM and SIGINT stop it cleanly (its
        replicas' processes stopped and reported), and the previous handlers are put back afterwards."""
        previous = {
            signum: signal.signal(signum, lambda *_: self.stop())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def run(self) -> None:
        next_beat = 0.0
        tick_s = min(0.1, self.config.heartbeat_s)
        answered = True  # after a failed beat, queued reports wait for the next regular one
        try:
            while not self._stop.is_set():
                changed = self._collect()
                self._flush_logs()
                if changed or (self._pending_reports and answered) or time.monotonic() >= next_beat:
                    answered = self._beat()
                    next_beat = time.monotonic() + self.config.heartbeat_s
                self._stop.wait(tick_s)
        finally:
            for process in self.processes.values():
                process.stop()
            self._collect()
            self._flush_logs()
            # Say how the replicas ended (start nothing new), as long as the server takes the beats (a
            # beat carries reports only once their replicas' log lines are delivered).
            while self._pending_reports and not self._pending_logs and self._beat(reconcile=False):
                pass

    def _beat(self, *, reconcile: bool = True) -> bool:
        """One heartbeat with the queued reports; False when the server did not take it."""
        # A replica's log lines go before its exit report, so a finished job's log is complete.
        reports = [] if self._pending_logs else self._pending_reports[:MAX_REPORTS]
        try:
            if not self._registered:
                self.client.register(self.registration())
                self._registered = True
            body = {**self.monitor.sample(len(self.processes)), "replicas": reports}
            answer = self.client.heartbeat(self.node_id, body)
        except ConflictError:
            self._registered = False  # declared lost or forgotten: register again on the next beat
            return False
        except ConfigError as exc:  # the server refuses this body for good: drop its reports, go on
            if not self._registered:
                raise  # this node's own registration is invalid: retrying cannot help
            log.warning("heartbeat refused, %d report(s) dropped: %s", len(reports), exc)
            del self._pending_reports[: len(reports)]
            return False
        except SkylineError as exc:  # unreachable, overloaded (429), token trouble: keep all, retry
            log.warning("heartbeat failed (will retry): %s", exc)
            return False
        del self._pending_reports[: len(reports)]
        for outcome in answer["reports"]:
            if not outcome["accepted"]:  # refused for good (e.g. a forgotten job): dropped
                log.warning("report dropped: %s", outcome["error"])
        if reconcile:
            self._reconcile(answer["assignments"])
        return True

    def _reconcile(self, assignments: list[dict[str, Any]]) -> None:
        wanted = {f"{a['job_id']}/{a['attempt']}/{a['rank']}": a for a in assignments}
        for key, process in self.processes.items():
            if key not in wanted and not process.stopped_by_agent:
                log.info("stopping replica %s", key)
                process.stop()
        for key, a in wanted.items():
            if key not in self.processes and key not in self._done:
                log.info("starting replica %s: %s", key, a["command"])
                self.processes[key] = ReplicaProcess(key, a["command"], a["env"], workdir=self.config.workdir)
                self._queue(key, "running", None)

    def _queue(self, key: str, status: str, exit_code: int | None) -> None:
        job_id, attempt, rank = key.rsplit("/", 2)
        body = {"job_id": job_id, "attempt": int(attempt), "rank": int(rank), "status": status}
        self._pending_reports.append({**body, "exit_code": exit_code})

    def _collect(self) -> bool:
        """Ship new log lines; queue a report for every replica that ended. True if any ended."""
        ended = []
        for key, process in self.processes.items():
            code = process.exit_code()
            lines = process.take_lines()
            if lines:
                self._queue_logs(key, lines)
            if code is not None:
                ended.append(key)
                status = "stopped" if process.stopped_by_agent else ("succeeded" if code == 0 else "failed")
                self._queue(key, status, code)
        for key in ended:
            del self.processes[key]
            self._done.add(key)
        return bool(ended)

    def _queue_logs(self, key: str, lines: list[str]) -> None:
        job_id, attempt, rank = key.rsplit("/", 2)
        for start in range(0, len(lines), 1000):
            self._pending_logs.append(
                {
                    "job_id": job_id,
                    "attempt": int(attempt),
                    "rank": int(rank),
                    "lines": [ln[:16384] for ln in lines[start : start + 1000]],
                }
            )

    def _flush_logs(self) -> None:
        """Send queued log lines in order; keep the rest when the server is unreachable."""
        while self._pending_logs:
            try:
                self.client.send_logs(self.node_id, self._pending_logs[0])
            except UnavailableError:
                return
            except SkylineError as exc:  # the server refuses them for good (e.g. a forgotten job)
                log.warning("log lines dropped: %s", exc)
            self._pending_logs.pop(0)
