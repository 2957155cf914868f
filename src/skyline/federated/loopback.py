"""A real Flower federation on 127.0.0.1: one SuperLink and N SuperNodes as separate processes (Flower's
deployment engine), running the deployment apps of `skyline.federated.deployment` through ``flwr run``.

Each SuperNode is what an edge agent runs (``flower-supernode --superlink CLOUD:PORT --node-config
'partition-id=i num-partitions=N'``); here all of them live on this host. Flower's HTTP APIs run without
TLS (``--insecure``): acceptable on loopback only — across machines use Flower's ``--ssl-*`` options and
``--root-certificates``. Runtime dependency installation is disabled (the apps come from this venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from skyline.core.net import free_port
from skyline.errors import ConfigError, UnavailableError
from skyline.federated.apps import FederatedConfig

CONNECTION = "skyline-loopback"
APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "skyline-federated"
version = "1.0.0"
description = "skyline's federated apps (FedAvg/FedProx, record-level DP)"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "skyline"

[tool.flwr.app.components]
serverapp = "skyline.federated.deployment:server_app"
clientapp = "skyline.federated.deployment:client_app"

[tool.flwr.app.config]
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UnavailableError(f"the Flower SuperLink exited with code {process.returncode} at start")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise UnavailableError(
        f"the Flower SuperLink did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s"
    )


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(process.pid, signum)


class LoopbackFederation:
    """``with LoopbackFederation(3, folder) as federation: federation.run(config)``; every process it
    starts (each in its own process group, with Flower's helper processes) is stopped on exit."""

    def __init__(self, clients: int, folder: Path, *, start_timeout_s: float = 120.0) -> None:
        if clients < 2:
            raise ConfigError(f"a federation needs at least 2 SuperNodes, got {clients}")
        self.clients, self.folder, self.start_timeout_s = clients, folder, start_timeout_s
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        scripts = str(Path(sys.executable).parent)  # Flower starts flower-superexec, flwr-clientapp… by name
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
            "FLWR_HOME": str(folder / "flwr-home"),
            "OMP_NUM_THREADS": "1",
        }

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / args[0]), *args[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def __enter__(self) -> LoopbackFederation:
        home = self.folder / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        try:
            superlink = self._start(
                "superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(self.port),
                "--database", str(self.folder / "superlink.db"), "--disable-runtime-dependency-installation",
            )  # fmt: skip
            _wait_for_port(self.port, superlink, self.start_timeout_s)
            for node in range(self.clients):
                self._start(
                    f"supernode-{node}", "flower-supernode", "--insecure",
                    "--superlink", f"127.0.0.1:{self.port}", "--host", "127.0.0.1", "--port", str(free_port()),
                    "--node-config", f"partition-id={node} num-partitions={self.clients}",
                )  # fmt: skip
        except BaseException:
            self.close()
            raise
        return self

    def run(self, config: FederatedConfig, *, timeout_s: float = 1800.0) -> dict[str, Any]:
        """Submit one run with ``flwr run`` and wait for it; returns the ServerApp's result."""
        from skyline.federated.deployment import run_config_of

        if config.clients != self.clients:
            raise ConfigError(f"the run wants {config.clients} clients; this federation has {self.clients}")
        app = self.folder / "app"
        app.mkdir(exist_ok=True)
        results = self.folder / "result.json"
        results.unlink(missing_ok=True)
        values = {**run_config_of(config), "results-path": str(results)}
        (app / "pyproject.toml").write_text(
            APP_PYPROJECT + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        )
        flwr = str(Path(sys.executable).parent / "flwr")
        with (self.folder / "flwr-run.log").open("ab") as log:
            try:
                finished = subprocess.run(
                    [flwr, "run", str(app), CONNECTION, "--stream"],
                    stdout=log, stderr=subprocess.STDOUT, env=self.env, timeout=timeout_s, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:  # `flwr run` is killed; the federation stops on exit
                raise UnavailableError(
                    f"the federated run did not finish within {timeout_s:.0f} s; see {self.folder / 'flwr-run.log'}"
                ) from exc
        if finished.returncode != 0 or not results.exists():
            tail = (self.folder / "flwr-run.log").read_text(errors="replace")[-600:]
            raise UnavailableError(f"the federated run failed (flwr run exit {finished.returncode}): {tail}")
        result: dict[str, Any] = json.loads(results.read_text())
        return result

    def close(self) -> None:
        """Stop every process group started (Flower's SuperExec and app processes are in them too)."""
        for process in self.processes:
            _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=15)
        time.sleep(0.5)  # then whatever of a group outlived its leader
        for process in self.processes:
            _signal_group(process, signal.SIGKILL)
        self.processes.clear()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
