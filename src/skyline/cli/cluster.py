"""`skyline cluster|agent|job|node`: run a control plane, join nodes to it, submit and watch jobs.

Clients find the server and their token in ``--server``/``--token`` or ``SKYLINE_SERVER``/
``SKYLINE_TOKEN``. Heavy imports (FastAPI, SQLAlchemy, httpx) happen inside the commands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from skyline.cli.output import console, write_json
from skyline.errors import ConfigError

if TYPE_CHECKING:
    from skyline.cluster.client import ClusterClient
    from skyline.cluster.server import Serving

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
DB = typer.Option(None, "--db", help="Database URL (default: SQLite in --state-dir).")
EXECUTOR = typer.Option("local", help="local (node agents) or ray (an existing Ray cluster).")
POLICY = typer.Option("fifo", help="Scheduling policy (see 'skyline sim policies').")
THROUGHPUTS = typer.Option(None, help="Gavel simulation_throughputs.json, for the gavel-* policies.")
AGENT = typer.Option(None, help="Start a local node agent (default: with --executor local).")
RAY_ADDRESS = typer.Option(None, help="Ray cluster address for --executor ray.")
TICK = typer.Option(0.5, help="Scheduling pass at least every this many seconds.")
LOST_AFTER = typer.Option(10.0, help="A node silent this long is lost; its jobs are requeued.")
HEARTBEAT = typer.Option(None, help="Heartbeat period of the local agent (default 1 s).")
TLS_CERT = typer.Option(None, help="Serve HTTPS with this certificate (PEM).")
TLS_KEY = typer.Option(None, help="The certificate's private key (PEM, mode 0600).")
AUDIT = typer.Option(
    None, help="Append every state-changing call (who, what, result) to this hash-chained log."
)
RATE = typer.Option(
    None, help="Requests per second allowed to each token (then 429 with Retry-After); default: none."
)
MASTER_PORTS = typer.Option(
    "29500-29999", help="Ports a gang's MASTER_PORT is picked from (per job and attempt)."
)
MODEL_REPOSITORY = typer.Option(
    None, help="Model repository the console's Models view shows (and the edge fleet recorded in it)."
)
TRUSTED_KEY = typer.Option(
    [], "--trusted-key", help="Public key (PEM) the repository's signatures are verified with (repeatable)."
)
GATEWAY_PORT = typer.Option(8480, help="The services' gateway port (/services/<name>/...; 0: any).")
SERVICE_PORTS = typer.Option(
    "30000-32767", help="Ports service replicas are given (in --port-env), FIRST-LAST."
)


@cluster_app.command("up")
def cluster_up(
    db: str | None = DB, executor: str = EXECUTOR, policy: str = POLICY, throughputs: Path | None = THROUGHPUTS,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8470, help="Port to listen on (0: any free port)."),
    state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="Database, tokens, agent log."),
    agent: bool | None = AGENT, ray_address: str | None = RAY_ADDRESS, tick_s: float = TICK,
    lost_after_s: float = LOST_AFTER, heartbeat_s: float | None = HEARTBEAT, tls_cert: Path | None = TLS_CERT,
    tls_key: Path | None = TLS_KEY, audit_log: Path | None = AUDIT, rate_limit: float | None = RATE,
    master_ports: str = MASTER_PORTS, gateway_port: int = GATEWAY_PORT, service_ports: str = SERVICE_PORTS,
    model_repository: Path | None = MODEL_REPOSITORY, trusted_key: list[Path] = TRUSTED_KEY,
) -> None:  # fmt: skip
    """Start the control plane in the foreground (Ctrl-C stops it); print the first admin token once.

    With --tls-cert/--tls-key it speaks only HTTPS; clients verify it with --ca (the certificate itself
    when self-signed: 'skyline keys tls' makes a test pair). A clean stop also stops the local agent.
    """
    from skyline.cluster.control import ControlConfig
    from skyline.cluster.local_agent import LocalAgentConfig
    from skyline.cluster.server import ServerConfig, serve_forever
    from skyline.cluster.services import ServicesConfig
    from skyline.core.net import PortRange

    if not (agent if agent is not None else executor == "local") and heartbeat_s is not None:
        raise ConfigError("--heartbeat-s is the local agent's: drop it, or do not pass --no-agent")
    with_agent = agent if agent is not None else executor == "local"
    config = ServerConfig(
        state_dir=state_dir, db_url=db, executor=executor, policy=policy, throughputs=throughputs, host=host,
        port=port, ray_address=ray_address, control=ControlConfig(tick_s=tick_s, lost_after_s=lost_after_s),
        tls_cert=tls_cert, tls_key=tls_key, audit_log=audit_log, rate_limit_per_s=rate_limit,
        master_ports=PortRange.parse(master_ports), gateway_port=gateway_port,
        services=ServicesConfig(ports=PortRange.parse(service_ports)),
        model_repository=model_repository, trusted_keys=tuple(trusted_key),
        edge_fleet=edge_fleet(model_repository) if model_repository is not None else None,
        local_agent=LocalAgentConfig(heartbeat_s=heartbeat_s or 1.0) if with_agent else None,
    )  # fmt: skip
    serve_forever(config, announce=lambda s: _announce(s, executor=executor, policy=policy))


def edge_fleet(repository: Path) -> Callable[[], list[dict[str, Any]]]:
    """The edge agents the edge cloud serving ``repository`` recorded (its fleet store), as `skyline edge
    fleet` lists them: for the console, which cannot import skyline.edge (a sibling layer)."""

    def rows() -> list[dict[str, Any]]:
        from skyline.edge.cloud import fleet_path
        from skyline.edge.fleet import FleetStore
        from skyline.edge.fleet_api import agent_view
        from skyline.serving.repository import ModelRepository

        if not fleet_path(repository).is_file():
            return []
        fleet = FleetStore(fleet_path(repository))
        try:
            agents, now = fleet.agents(), time.time()
            models = ModelRepository(repository)
            versions = {m: models.versions(m) for a in agents for m in a.models}
            return [agent_view(a, fleet, versions, now) for a in agents]
        finally:
            fleet.close()

    return rows


def _announce(serving: Serving, *, executor: str, policy: str) -> None:
    console.print(
        f"skyline control plane on {serving.url} (db {serving.database}, executor {executor}, "
        f"policy {policy}); services gateway on {serving.gateway_url}"
    )
    console.print(f"web console on {serving.url}/ui/ (sign in with a token)")
    if serving.admin_token is not None:
        console.print(f"admin token (shown once, keep it): {serving.admin_token}", soft_wrap=True)
    if serving.agent_adopted:
        console.print(f"local agent already running (pid {serving.agent_pid}): reattached")
    sys.stdout.flush()


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
    gpu_type: str | None = typer.Option(None, help="The GPUs' model name jobs ask for (default: NVML's)."),
) -> None:
    """Register this machine and run the jobs placed on it until stopped (SIGTERM or Ctrl-C)."""
    import logging

    from skyline.cluster.agent import AgentConfig, NodeAgent
    from skyline.core import Tier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = AgentConfig(
        name=name, tier=Tier.parse(tier), address=address, heartbeat_s=heartbeat_s,
        cpus=cpus, memory_mib=memory_mib, gpus=gpus, gpu_type=gpu_type,
    )  # fmt: skip
    node_agent = NodeAgent(_client(server, token, ca), config)
    console.print(f"agent {config.name} joining {server}")
    node_agent.run_in_foreground()


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
    name: str | None = typer.Option(None, help="A name to recognise the job by."),
    cpus: float | None = typer.Option(None, help="CPUs per replica (default 1)."),
    memory_mib: int | None = typer.Option(None, help="Memory per replica (MiB; default 256)."),
    gpus: float | None = typer.Option(None, help="GPUs per replica (fractions allowed below 1; default 0)."),
    gpu_type: str | None = typer.Option(None, help="GPU model(s) it may use, e.g. v100 or v100|a100."),
    replicas: int | None = typer.Option(None, help="Gang size: all replicas start together or none."),
    tier: str | None = typer.Option(None, help="Run only on this tier."),
    estimate_s: float | None = typer.Option(None, help="How long it runs (shortest-first policies use it)."),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE for every replica (repeatable)."),
    idempotency_key: str | None = typer.Option(None, help="Retrying with the same key never duplicates."),
    wait: bool = typer.Option(False, help="Wait until the job finishes; exit 1 unless it succeeded."),
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON,
) -> None:  # fmt: skip
    """Submit a job from a YAML file or from flags; print its id."""
    from skyline.cluster.spec import load_job_file, request_body, request_from_mapping

    flags = {"command": command, "name": name, "cpus": cpus, "memory_mib": memory_mib, "gpus": gpus,
             "gpu_type": gpu_type, "replicas": replicas, "tier": tier, "estimate_s": estimate_s}  # fmt: skip
    given = {key: value for key, value in flags.items() if value is not None}
    if spec_file is not None and (given or env):
        raise ConfigError(f"give a job file or flags, not both (got --{', --'.join(given) or 'env'})")
    if spec_file is None and not command:
        raise ConfigError("give a job file or --command 'python train.py'")
    request = (
        load_job_file(spec_file) if spec_file else request_from_mapping({**given, "env": _parse_env(env)})
    )
    body = request_body(request)
    idempotency_key = idempotency_key or request.idempotency_key
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
