"""`skyline cluster|agent|job|node`: run a control plane, join nodes to it, submit and watch jobs.

Clients find the server and their token in ``--server``/``--token`` or ``SKYLINE_SERVER``/
``SKYLINE_TOKEN``. Heavy imports (FastAPI, SQLAlchemy, httpx) happen inside the commands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from skyline.cli.output import console, write_json
from skyline.errors import ConfigError

if TYPE_CHECKING:
    from skyline.cluster.client import ClusterClient

cluster_app = typer.Typer(
    help="Run a control plane (API server, state store, scheduler).", no_args_is_help=True
)
agent_app = typer.Typer(help="Node agents: join a machine to a control plane.", no_args_is_help=True)
job_app = typer.Typer(help="Submit, list, watch, read the logs of and cancel jobs.", no_args_is_help=True)
node_app = typer.Typer(help="The nodes of a control plane.", no_args_is_help=True)

DEFAULT_SERVER = "http://127.0.0.1:8470"
DEFAULT_STATE_DIR = Path.home() / ".skyline" / "cluster"
SERVER = typer.Option(DEFAULT_SERVER, "--server", envvar="SKYLINE_SERVER", help="Control plane URL.")
TOKEN = typer.Option("", "--token", envvar="SKYLINE_TOKEN", help="Bearer token (or SKYLINE_TOKEN).")
JSON = typer.Option(None, "--json", help="Write the result as JSON to this path ('-' for stdout).")
CA = typer.Option(
    None, "--ca", envvar="SKYLINE_CA",
    help="CA certificate to verify an https:// server with (its own certificate when self-signed).",
)  # fmt: skip


def _client(server: str, token: str, ca: Path | None = None) -> ClusterClient:
    from skyline.cluster.client import ClusterClient

    if not token:
        raise ConfigError("no token: pass --token or set SKYLINE_TOKEN ('skyline cluster up' prints one)")
    return ClusterClient(server, token, ca_path=ca)


def _emit(json_path: Path | None, payload: Any) -> bool:
    """Write ``payload`` as JSON when asked; True when it went to stdout (print nothing else then)."""
    if json_path is None:
        return False
    if str(json_path) == "-":
        import json

        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return True
    write_json(json_path, payload)
    return False


# ---------------------------------------------------------------------- cluster up
def _exit_normally(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _spawn_local_agent(
    state_dir: Path, url: str, token: str, heartbeat_s: float, ca: Path | None = None
) -> subprocess.Popen[bytes] | None:
    """Start this machine's agent unless one started by an earlier `cluster up` still runs (SIGKILL restart)."""
    pidfile = state_dir / "agent.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
            console.print(f"local agent already running (pid {pidfile.read_text().strip()}): reattaching")
            return None
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    command = [sys.executable, "-m", "skyline.cli.app", "agent", "join", "--server", url]
    command += ["--heartbeat-s", str(heartbeat_s), "--name", "local"]
    if ca is not None:
        command += ["--ca", str(ca)]
    log = (state_dir / "agent.log").open("ab")
    process = subprocess.Popen(
        command,
        env={**os.environ, "SKYLINE_TOKEN": token},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pidfile.write_text(str(process.pid))
    return process


@cluster_app.command("up")
def cluster_up(
    db: str | None = typer.Option(None, "--db", help="Database URL (default: SQLite in --state-dir)."),
    executor: str = typer.Option("local", help="local (node agents) or ray (an existing Ray cluster)."),
    policy: str = typer.Option("fifo", help="Scheduling policy (see 'skyline sim policies')."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8470, help="Port to listen on (0: any free port)."),
    state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="Database, tokens, agent log."),
    agent: bool = typer.Option(True, help="Start a local node agent (one machine is a working cluster)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address for --executor ray."),
    tick_s: float = typer.Option(0.5, help="Scheduling pass at least every this many seconds."),
    lost_after_s: float = typer.Option(10.0, help="A node silent this long is lost; its jobs are requeued."),
    heartbeat_s: float = typer.Option(1.0, help="Heartbeat period of the local agent."),
    tls_cert: Path | None = typer.Option(None, help="Serve HTTPS with this certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, help="The certificate's private key (PEM, mode 0600)."),
    audit_log: Path | None = typer.Option(
        None, help="Append every state-changing call (who, what, result) to this hash-chained log."
    ),
    rate_limit: float | None = typer.Option(
        None, help="Requests per second allowed to each token (then 429 with Retry-After); default: no limit."
    ),
    master_ports: str = typer.Option(
        "29500-29999", help="Ports a gang's MASTER_PORT is picked from (per job and attempt), FIRST-LAST."
    ),
) -> None:
    """Start the control plane in the foreground (Ctrl-C stops it); print the first admin token once.

    With --tls-cert/--tls-key it speaks only HTTPS; clients verify it with --ca (the certificate itself
    when self-signed: 'skyline keys tls' makes a test pair).
    """
    import uvicorn

    from skyline.cluster.control import ControlConfig
    from skyline.cluster.server import ServerConfig, build, uvicorn_config
    from skyline.core.net import PortRange
    from skyline.serving.server import bind_socket

    config = ServerConfig(
        state_dir=state_dir, db_url=db, executor=executor, policy=policy, host=host, port=port,
        ray_address=ray_address, control=ControlConfig(tick_s=tick_s, lost_after_s=lost_after_s),
        tls_cert=tls_cert, tls_key=tls_key, audit_log=audit_log, rate_limit_per_s=rate_limit,
        master_ports=PortRange.parse(master_ports),
    )  # fmt: skip
    built = build(config)
    sock = bind_socket(host, port)
    url = f"{config.scheme}://{host}:{sock.getsockname()[1]}"
    admin = built.authority.bootstrap_admin()
    console.print(
        f"skyline control plane on {url} (db {built.store.url}, executor {executor}, policy {policy})"
    )
    if admin is not None:
        console.print(f"admin token (shown once, keep it): {admin}", soft_wrap=True)
    local_agent = None
    if agent and executor == "local":
        token = built.authority.issue("agent-local", "agent")
        local_agent = _spawn_local_agent(config.state_dir, url, token, heartbeat_s, tls_cert)
    sys.stdout.flush()
    # The scheduling loop shares the interpreter with the API's event loop; each database call releases
    # the GIL and, at the default 5 ms switch interval, waits up to 5 ms to get it back while requests
    # stream in (a 3-job pass was measured taking 200 ms). A shorter interval keeps passes short.
    sys.setswitchinterval(0.0005)
    built.control.start()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it found:
    # with the default one the process would die there, skipping the clean-up below (and leaving the
    # local agent running). This one turns it into a normal exit.
    signal.signal(signal.SIGTERM, _exit_normally)
    try:
        server = uvicorn.Server(uvicorn_config(built.app, tls_cert=tls_cert, tls_key=tls_key))
        server.run(sockets=[sock])
    finally:
        built.control.stop()
        if local_agent is not None:
            local_agent.send_signal(signal.SIGTERM)
            try:
                local_agent.wait(timeout=15)
            except subprocess.TimeoutExpired:  # it would not stop: end it and the replicas it runs
                os.killpg(local_agent.pid, signal.SIGKILL)
                local_agent.wait(timeout=15)
            (config.state_dir / "agent.pid").unlink(missing_ok=True)


# ---------------------------------------------------------------------- agent join
@agent_app.command("join")
def agent_join(
    server: str = SERVER,
    token: str = TOKEN,
    ca: Path | None = CA,
    tier: str = typer.Option("datacenter", help="datacenter, cloud or edge."),
    name: str = typer.Option("", help="Node name (default: the host name)."),
    address: str = typer.Option("127.0.0.1", help="Address other nodes reach this one at (MASTER_ADDR)."),
    heartbeat_s: float = typer.Option(1.0, help="Seconds between heartbeats."),
    cpus: float | None = typer.Option(None, help="Offer this many CPUs (default: all)."),
    memory_mib: int | None = typer.Option(None, help="Offer this much memory (default: all)."),
    gpus: int | None = typer.Option(None, help="Offer this many GPUs (default: what NVML finds)."),
) -> None:
    """Register this machine and run the jobs placed on it until stopped (SIGTERM or Ctrl-C)."""
    import logging

    from skyline.cluster.agent import AgentConfig, NodeAgent
    from skyline.core import Tier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = AgentConfig(
        name=name, tier=Tier.parse(tier), address=address, heartbeat_s=heartbeat_s,
        cpus=cpus, memory_mib=memory_mib, gpus=gpus,
    )  # fmt: skip
    node_agent = NodeAgent(_client(server, token, ca), config)
    signal.signal(signal.SIGTERM, lambda *_: node_agent.stop())
    console.print(f"agent {config.name} joining {server}")
    try:
        node_agent.run()
    except KeyboardInterrupt:
        node_agent.stop()


# ---------------------------------------------------------------------- jobs
def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env takes NAME=VALUE, got {pair!r}")
        env[key] = value
    return env


@job_app.command("submit")
def job_submit(
    spec_file: Path | None = typer.Argument(None, help="A job YAML file (command, cpus, replicas ...)."),
    command: str | None = typer.Option(None, help="Shell command each replica runs."),
    name: str = typer.Option("", help="A name to recognise the job by."),
    cpus: float = typer.Option(1.0, help="CPUs per replica."),
    memory_mib: int = typer.Option(256, help="Memory per replica (MiB)."),
    gpus: float = typer.Option(0.0, help="GPUs per replica (fractions allowed below 1)."),
    replicas: int = typer.Option(1, help="Gang size: all replicas start together or none."),
    tier: str | None = typer.Option(None, help="Run only on this tier."),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE for every replica (repeatable)."),
    idempotency_key: str | None = typer.Option(None, help="Retrying with the same key never duplicates."),
    wait: bool = typer.Option(False, help="Wait until the job finishes; exit 1 unless it succeeded."),
    server: str = SERVER,
    token: str = TOKEN,
    ca: Path | None = CA,
    json_path: Path | None = JSON,
) -> None:
    """Submit a job from a YAML file or from flags; print its id."""
    from skyline.cluster.spec import load_job_file

    if spec_file is not None:
        request = load_job_file(spec_file)
        body: dict[str, Any] = {
            "command": request.command, "name": request.name, "cpus": request.resources.cpus,
            "memory_mib": request.resources.memory_mib, "gpus": request.resources.gpus,
            "replicas": request.replicas, "kind": str(request.kind), "tiers": sorted(map(str, request.tiers)),
            "priority": request.priority, "env": dict(request.env),
        }  # fmt: skip
        idempotency_key = idempotency_key or request.idempotency_key
    elif command:
        body = {"command": command, "name": name, "cpus": cpus, "memory_mib": memory_mib, "gpus": gpus}
        body.update(replicas=replicas, tiers=[tier] if tier else [], env=_parse_env(env))
    else:
        raise ConfigError("give a job file or --command 'python train.py'")
    with _client(server, token, ca) as client:
        job = client.submit(body, idempotency_key=idempotency_key)
        if wait:
            job = client.wait(job["id"], timeout_s=24 * 3600)
    if not _emit(json_path, job):
        console.print(f"{job['id']} {job['status']}")
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


@job_app.command("list")
def job_list(
    status: list[str] = typer.Option([], "--status", help="Only jobs in this status (repeatable)."),
    server: str = SERVER,
    token: str = TOKEN,
    ca: Path | None = CA,
    json_path: Path | None = JSON,
) -> None:
    """Jobs in submit order: id, name, status, replicas, restarts, exit code."""
    from rich.table import Table

    with _client(server, token, ca) as client:
        jobs = client.jobs(status=status)
    if _emit(json_path, jobs):
        return
    table = Table("id", "name", "owner", "status", "replicas", "restarts", "exit")
    for j in jobs:
        exit_code = "" if j["exit_code"] is None else str(j["exit_code"])
        table.add_row(
            j["id"], j["name"], j["owner"], j["status"], str(j["replicas"]), str(j["restarts"]), exit_code
        )
    console.print(table)


@job_app.command("status")
def job_status(
    job_id: str, server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON
) -> None:
    """One job: status, placement, times, exit code and message."""
    with _client(server, token, ca) as client:
        job = client.job(job_id)
    if _emit(json_path, job):
        return
    console.print(f"{job['id']} ({job['name']}): {job['status']}, restarts {job['restarts']}")
    for replica in job["placement"]:
        console.print(f"  rank {replica['rank']} on {replica['node_id']}: {replica['status']}")
    if job["exit_code"] is not None or job["message"]:
        console.print(f"  exit code {job['exit_code']}: {job['message']}", soft_wrap=True)


@job_app.command("logs")
def job_logs(
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job finishes."),
    server: str = SERVER,
    token: str = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Print a job's output, every replica's lines prefixed with its rank."""
    with _client(server, token, ca) as client:
        lines = client.follow_logs(job_id) if follow else iter(client.logs(job_id, after=0)["lines"])
        for line in lines:
            sys.stdout.write(f"[{line['rank']}] {line['line']}\n")
            sys.stdout.flush()


@job_app.command("cancel")
def job_cancel(
    job_id: str, server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON
) -> None:
    """Cancel a job; its replicas are stopped."""
    with _client(server, token, ca) as client:
        job = client.cancel(job_id)
    if not _emit(json_path, job):
        console.print(f"{job['id']} {job['status']}")


# ---------------------------------------------------------------------- nodes
@node_app.command("list")
def node_list(
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON
) -> None:
    """Nodes: tier, capacity, alive or lost, seconds since the last heartbeat."""
    from rich.table import Table

    with _client(server, token, ca) as client:
        nodes = client.nodes()
    if _emit(json_path, nodes):
        return
    table = Table("id", "tier", "status", "cpus", "memory_mib", "gpus", "last beat (s ago)")
    now = time.time()
    for n in nodes:
        ago = f"{now - n['last_heartbeat_at']:.1f}"
        table.add_row(
            n["id"], n["tier"], n["status"], f"{n['cpus']:g}", str(n["memory_mib"]), f"{n['gpus']:g}", ago
        )
    console.print(table)
