"""Flower's deployment engine as supervised processes: a SuperLink (the cloud) and SuperNodes (the agents).

Each process runs in its own process group (Flower's SuperExec and app processes join it) and is stopped
with its whole group. Flower's HTTP APIs run without TLS (``--insecure``) only on loopback; across
machines they take a certificate (SuperLink ``--ssl-*``) and SuperNodes verify it (``--root-certificates``).
Runtime dependency installation is disabled: the apps come from this environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from skyline.core.net import free_port
from skyline.errors import ConfigError, UnavailableError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def flower_env(home: Path) -> dict[str, str]:
    """The environment Flower's commands run in: this venv's scripts first, state under ``home``."""
    scripts = str(Path(sys.executable).parent)  # Flower starts flower-superexec, flwr-clientapp… by name
    return {
        **os.environ,
        "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
        "FLWR_HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
    }


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(process.pid, signum)


class FlowerProcess:
    """One Flower command (``flower-superlink``, ``flower-supernode``) in its own process group, logging to
    ``log``; `stop` ends the whole group (SIGTERM, then SIGKILL after ``grace_s``)."""

    def __init__(self, args: list[str], *, log: Path, env: Mapping[str, str]) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / args[0]), *args[1:]],
                stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True,
            )  # fmt: skip
        self.log = log

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, *, grace_s: float = 15.0) -> None:
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(timeout=grace_s)
        time.sleep(0.2)  # then whatever of the group outlived its leader
        _signal_group(self.process, signal.SIGKILL)


def _wait_for_port(host: str, port: int, process: FlowerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise UnavailableError(f"the Flower SuperLink exited at start; see {process.log}")
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise UnavailableError(f"the Flower SuperLink did not listen on {host}:{port} within {timeout_s:.0f} s")


def start_superlink(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: tuple[Path, Path] | None = None,
    start_timeout_s: float = 120.0,
) -> tuple[FlowerProcess, int]:
    """Start a SuperLink listening on ``host:port`` (0: a free port) with its state in ``folder``; returns
    it once it accepts connections, and its port. TLS (certificate, key) is required off loopback."""
    if tls is None and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"a SuperLink on {host} needs a TLS certificate and key; without TLS only on loopback"
        )
    port = port or free_port()
    security = (
        ["--insecure"] if tls is None else ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    )
    process = FlowerProcess(
        ["flower-superlink", *security, "--host", host, "--port", str(port),
         "--database", str(folder / "superlink.db"), "--disable-runtime-dependency-installation"],
        log=folder / "superlink.log", env=flower_env(folder / "flwr-home"),
    )  # fmt: skip
    try:
        _wait_for_port("127.0.0.1" if host in LOOPBACK_HOSTS else host, port, process, start_timeout_s)
    except BaseException:
        process.stop()
        raise
    return process, port


def start_supernode(
    folder: Path, *, superlink: str, node_config: Mapping[str, str | int | float], ca: Path | None = None
) -> FlowerProcess:
    """Start a SuperNode connected to ``superlink`` (host:port) with ``node_config`` (what the ClientApp
    reads from ``context.node_config``: where this node's data is, its name). Without ``ca`` the link is
    plain HTTP, allowed only to a loopback SuperLink."""
    host = superlink.rsplit(":", 1)[0]
    if ca is None and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"the SuperLink {superlink} is not on loopback: pass --ca to verify its certificate"
        )
    security = ["--insecure"] if ca is None else ["--root-certificates", str(ca)]
    config = " ".join(f"{key}={_toml(value)}" for key, value in node_config.items())
    return FlowerProcess(
        ["flower-supernode", *security, "--superlink", superlink, "--host", "127.0.0.1",
         "--port", str(free_port()), "--node-config", config],
        log=folder / "supernode.log", env=flower_env(folder / "flwr-home"),
    )  # fmt: skip


def _toml(value: str | int | float) -> str:
    if not isinstance(value, str):
        return str(value)
    if any(c.isspace() or c in "\"'=" for c in value):  # Flower splits the node config on spaces
        raise ConfigError(f"node config value {value!r} may not contain spaces, quotes or '='")
    return f'"{value}"'
