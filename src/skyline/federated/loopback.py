"""Submitting runs to a Flower SuperLink (``flwr run``), and a whole federation on 127.0.0.1 for `skyline fl
deploy`: one SuperLink and N SuperNodes as separate processes (`skyline.federated.processes`), each node
holding the Dirichlet share of the data its ``partition-id`` names.

A run is a Flower App: a ``pyproject.toml`` naming the server and client components (module-level apps,
`skyline.federated.deployment`) and the run config (`skyline.federated.run_config.run_config_of`); the
ServerApp writes its result (the ``skyline fl run`` JSON contract) to the run config's ``results-path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from skyline.errors import ConfigError, UnavailableError
from skyline.federated.apps import FederatedConfig
from skyline.federated.processes import FlowerProcess, flower_env, start_superlink, start_supernode

CONNECTION = "skyline"
APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "skyline-federated"
version = "1.0.0"
description = "skyline's federated apps (FedAvg/FedProx, record-level DP, SecAgg+)"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "skyline"

[tool.flwr.app.components]
serverapp = "{server}"
clientapp = "{client}"

[tool.flwr.app.config]
"""


def submit_run(
    folder: Path,
    superlink: str,
    run_config: dict[str, Any],
    *,
    components: tuple[str, str],
    ca: Path | None = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Write a Flower App with ``components`` (server, client) and ``run_config`` under ``folder``, run it
    on the SuperLink at ``superlink`` (host:port) with ``flwr run`` and return the ServerApp's result."""
    home, app, results = folder / "flwr-home", folder / "app", folder / "result.json"
    home.mkdir(parents=True, exist_ok=True)
    app.mkdir(parents=True, exist_ok=True)
    security = "insecure = true" if ca is None else f'root-certificates = "{ca}"'
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "{superlink}"\n{security}\n'
    )
    results.unlink(missing_ok=True)
    values = {**run_config, "results-path": str(results)}
    server, client = components
    (app / "pyproject.toml").write_text(
        APP_PYPROJECT.format(server=server, client=client)
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    )
    flwr = str(Path(sys.executable).parent / "flwr")
    log = folder / "flwr-run.log"
    with log.open("ab") as out:
        try:
            finished = subprocess.run(
                [flwr, "run", str(app), CONNECTION, "--stream"],
                stdout=out, stderr=subprocess.STDOUT, env=flower_env(home), timeout=timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise UnavailableError(
                f"the federated run did not finish within {timeout_s:.0f} s; see {log}"
            ) from exc
    if finished.returncode != 0 or not results.exists():
        tail = log.read_text(errors="replace")[-600:]
        raise UnavailableError(f"the federated run failed (flwr run exit {finished.returncode}): {tail}")
    result: dict[str, Any] = json.loads(results.read_text())
    return result


class LoopbackFederation:
    """``with LoopbackFederation(3, folder) as federation: federation.run(config)``; every process it
    starts is stopped on exit."""

    def __init__(self, clients: int, folder: Path, *, start_timeout_s: float = 120.0) -> None:
        if clients < 2:
            raise ConfigError(f"a federation needs at least 2 SuperNodes, got {clients}")
        self.clients, self.folder, self.start_timeout_s = clients, folder, start_timeout_s
        self.processes: list[FlowerProcess] = []
        self.superlink = ""

    def __enter__(self) -> LoopbackFederation:
        try:
            link, port = start_superlink(self.folder / "superlink", start_timeout_s=self.start_timeout_s)
            self.processes.append(link)
            self.superlink = f"127.0.0.1:{port}"
            for node in range(self.clients):
                self.processes.append(
                    start_supernode(
                        self.folder / f"supernode-{node}",
                        superlink=self.superlink,
                        node_config={"partition-id": node, "num-partitions": self.clients},
                    )
                )
        except BaseException:
            self.close()
            raise
        return self

    def run(self, config: FederatedConfig, *, timeout_s: float = 1800.0) -> dict[str, Any]:
        """Submit one run with ``flwr run`` and wait for it; returns the ServerApp's result."""
        from skyline.federated.deployment import COMPONENTS
        from skyline.federated.run_config import run_config_of

        if config.clients != self.clients:
            raise ConfigError(f"the run wants {config.clients} clients; this federation has {self.clients}")
        return submit_run(
            self.folder / "run", self.superlink, run_config_of(config),
            components=COMPONENTS[config.secagg], timeout_s=timeout_s,
        )  # fmt: skip

    def close(self) -> None:
        """Stop every process group started (Flower's SuperExec and app processes are in them too)."""
        for process in self.processes:
            process.stop()
        self.processes.clear()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
