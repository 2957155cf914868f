"""`skyline service deploy|list|status|scale|update|delete`: inference services on a control plane.

A YAML file and flags build the same body (flags override the file's fields); the control plane
validates it (`skyline.cluster.service_spec`), places the replicas, probes them and routes traffic to
them through its gateway at ``<gateway>/services/<name>/...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from skyline.cli.cluster import CA, JSON, SERVER, TOKEN, _client, _emit, _parse_env
from skyline.cli.output import console
from skyline.errors import ConfigError

if TYPE_CHECKING:
    from skyline.cluster.service_client import ServiceClient

service_app = typer.Typer(
    help="Inference services: replicas placed by the scheduler, a stable endpoint, autoscaling.",
    no_args_is_help=True,
)

NAME = typer.Argument(..., help="The service's name.")
WAIT = typer.Option(False, "--wait", help="Return once the replicas are ready (or the service is gone).")
TIMEOUT = typer.Option(300.0, "--timeout", help="Seconds --wait waits.")
COMMAND = typer.Option(
    None, "--command", help="Each replica's command; it must listen on $PORT (--port-env)."
)
PORT_ENV = typer.Option(None, "--port-env", help="The variable a replica reads its port from (default PORT).")
REPLICAS = typer.Option(None, "--replicas", help="Replicas to start with.")
MIN = typer.Option(None, "--min", help="Fewest replicas (0 allows scaling to zero).")
MAX = typer.Option(None, "--max", help="Most replicas.")
MODEL = typer.Option(
    None, "--model", help="NAME:VERSION the replicas serve (checked by the readiness probe)."
)
READINESS = typer.Option(None, "--readiness", help="Path answering 200 when a replica may get traffic.")
AUTOSCALE = typer.Option(None, "--autoscale", help="predictive, reactive or off.")
TARGET_RPS = typer.Option(None, "--target-rps", help="Requests/s one replica serves within the SLO.")
SLO = typer.Option(None, "--slo-p99-ms", help="The p99 latency target (telemetry counts requests within it).")
STEP = typer.Option(None, "--step-s", help="Seconds between autoscaling decisions.")
FORECASTER = typer.Option(None, "--forecaster", help="Forecaster for --autoscale predictive (default gbdt).")
STARTUP = typer.Option(None, "--startup-s", help="A replica's start-up lead (default: measured).")
CPUS = typer.Option(None, "--cpus", help="CPUs per replica.")
MEMORY = typer.Option(None, "--memory-mib", help="Memory per replica.")
GPUS = typer.Option(None, "--gpus", help="GPUs per replica (fractions share a device).")
ENV = typer.Option([], "--env", help="NAME=VALUE for every replica (repeatable).")
CONCURRENCY = typer.Option(
    None, "--max-concurrency", help="Requests one replica gets at once (gateway-enforced)."
)
AFFINITY = typer.Option(
    None, "--affinity-header", help="Requests with the same value of this header stick to a replica."
)


def _services(server: str, token: str, ca: Path | None) -> ServiceClient:
    from skyline.cluster.service_client import ServiceClient

    return ServiceClient(_client(server, token, ca))


def _body(
    file: Path | None, top: dict[str, Any], autoscale: dict[str, Any], routing: dict[str, Any]
) -> dict[str, Any]:
    """The service body: the file's fields, then every flag that was given."""
    from skyline.cluster.service_spec import load_service_file

    body: dict[str, Any] = load_service_file(file) if file is not None else {}
    body.update({k: v for k, v in top.items() if v is not None})
    for key, flags in (("autoscale", autoscale), ("routing", routing)):
        given = {k: v for k, v in flags.items() if v is not None}
        if given:
            body[key] = {**(body.get(key) or {}), **given}
    return body


def _render(status: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(
        f"service {status['name']} ({status['status']}, generation {status['generation']}): "
        f"{status['ready']}/{status['desired']} ready, autoscale {status['autoscale']}, "
        f"endpoint {status['endpoint']}",
        soft_wrap=True,
    )
    if status.get("message"):
        console.print(f"  {status['message']}", soft_wrap=True)
    table = Table("replica job", "gen", "state", "job", "node", "port")
    for r in status.get("replicas", []):
        table.add_row(
            r["job_id"], str(r["generation"]), r["state"], r["job_status"], r["node_id"] or "", str(r["port"])
        )
    console.print(table)
    decisions = status.get("decisions") or []
    if decisions:
        table = Table("decision at", "observed", "forecast P90", "predictive", "reactive", "replicas", "why")
        for d in decisions:
            forecast = "" if d["forecast"] is None else f"{d['forecast']:.1f}"
            table.add_row(
                f"{d['at_s']:.0f}", f"{d['observed']:.0f}", forecast, str(d["predictive"] or ""),
                str(d["reactive"] or ""), f"{d['current']} → {d['target']}", d["reason"],
            )  # fmt: skip
        console.print(table)


@service_app.command("deploy")
def deploy(
    file: Path | None = typer.Argument(None, help="A service YAML file (flags override its fields)."),
    name: str | None = typer.Option(None, "--name", help="The service's name."),
    command: str | None = COMMAND, port_env: str | None = PORT_ENV, replicas: int | None = REPLICAS,
    min_replicas: int | None = MIN, max_replicas: int | None = MAX, model: str | None = MODEL,
    readiness: str | None = READINESS, autoscale: str | None = AUTOSCALE, target_rps: float | None = TARGET_RPS,
    slo_p99_ms: float | None = SLO, step_s: float | None = STEP, forecaster: str | None = FORECASTER,
    startup_s: float | None = STARTUP, cpus: float | None = CPUS, memory_mib: int | None = MEMORY,
    gpus: float | None = GPUS, env: list[str] = ENV, max_concurrency: int | None = CONCURRENCY,
    affinity_header: str | None = AFFINITY, wait: bool = WAIT, timeout: float = TIMEOUT,
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON,
) -> None:  # fmt: skip
    """Deploy a service from a YAML file and/or flags; its endpoint is printed."""
    if file is None and (name is None or command is None):
        raise ConfigError("give a service file, or at least --name and --command")
    top = {"name": name, "command": command, "port_env": port_env, "replicas": replicas, "model": model,
           "min_replicas": min_replicas, "max_replicas": max_replicas, "readiness": readiness,
           "slo_p99_ms": slo_p99_ms, "cpus": cpus, "memory_mib": memory_mib, "gpus": gpus,
           "env": _parse_env(env) or None}  # fmt: skip
    scaling = {"mode": autoscale, "target_rps_per_replica": target_rps, "step_s": step_s,
               "forecaster": forecaster, "startup_s": startup_s}  # fmt: skip
    routing = {"max_concurrency": max_concurrency, "affinity_header": affinity_header}
    from skyline.cluster.service_spec import service_from_mapping

    spec = service_from_mapping(_body(file, top, scaling, routing))  # bad input: one clear line, here
    with _services(server, token, ca) as services:
        status = services.deploy(spec.to_json())
        if wait:
            status = services.wait_ready(status["name"], timeout_s=timeout)
    if not _emit(json_path, status):
        _render(status)


@service_app.command("list")
def list_services(
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON
) -> None:
    """Services: replicas ready of desired, autoscaling, endpoint."""
    from rich.table import Table

    with _services(server, token, ca) as services:
        found = services.all()
    if _emit(json_path, found):
        return
    table = Table("name", "status", "ready", "desired", "min", "max", "autoscale", "model", "endpoint")
    for s in found:
        table.add_row(
            s["name"], s["status"], str(s["ready"]), str(s["desired"]), str(s["min_replicas"]),
            str(s["max_replicas"]), s["autoscale"], s["model"] or "", s["endpoint"],
        )  # fmt: skip
    console.print(table)


@service_app.command("status")
def status(
    name: str = NAME,
    server: str = SERVER,
    token: str = TOKEN,
    ca: Path | None = CA,
    json_path: Path | None = JSON,
) -> None:
    """A service's replicas (state, node, port), its latest telemetry and the autoscaler's last decisions."""
    with _services(server, token, ca) as services:
        found = services.status(name)
    if not _emit(json_path, found):
        _render(found)


@service_app.command("scale")
def scale(
    name: str = NAME, replicas: int | None = typer.Option(None, "--replicas", help="Replicas (autoscale off)."),
    min_replicas: int | None = MIN, max_replicas: int | None = MAX, wait: bool = WAIT, timeout: float = TIMEOUT,
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON,
) -> None:  # fmt: skip
    """Set the replica count (autoscaling off) and/or the bounds autoscaling keeps to."""
    if replicas is None and min_replicas is None and max_replicas is None:
        raise ConfigError("give --replicas, --min and/or --max")
    with _services(server, token, ca) as services:
        found = services.scale(name, replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas)
        if wait:
            found = services.wait_ready(name, timeout_s=timeout)
    if not _emit(json_path, found):
        _render(found)


@service_app.command("update")
def update(
    name: str = NAME, file: Path | None = typer.Option(None, "--file", help="A service YAML file to apply."),
    command: str | None = COMMAND, port_env: str | None = PORT_ENV, model: str | None = MODEL,
    readiness: str | None = READINESS, autoscale: str | None = AUTOSCALE, target_rps: float | None = TARGET_RPS,
    slo_p99_ms: float | None = SLO, step_s: float | None = STEP, forecaster: str | None = FORECASTER,
    startup_s: float | None = STARTUP, env: list[str] = ENV, max_concurrency: int | None = CONCURRENCY,
    affinity_header: str | None = AFFINITY, wait: bool = WAIT, timeout: float = TIMEOUT,
    server: str = SERVER, token: str = TOKEN, ca: Path | None = CA, json_path: Path | None = JSON,
) -> None:  # fmt: skip
    """Change a service; a new command, model, env, ... rolls its replicas over with no failed request."""
    top = {"command": command, "port_env": port_env, "model": model, "readiness": readiness,
           "slo_p99_ms": slo_p99_ms, "env": _parse_env(env) or None}  # fmt: skip
    scaling = {"mode": autoscale, "target_rps_per_replica": target_rps, "step_s": step_s,
               "forecaster": forecaster, "startup_s": startup_s}  # fmt: skip
    routing = {"max_concurrency": max_concurrency, "affinity_header": affinity_header}
    changes = _body(file, top, scaling, routing)
    named = changes.pop("name", name)
    if named != name:
        raise ConfigError(
            f"{file} describes service {named!r}, not {name!r}: update {named}, or fix the file"
        )
    if not changes:
        raise ConfigError("nothing to change: give --file or a flag (e.g. --model mlp:2)")
    with _services(server, token, ca) as services:
        found = services.update(name, changes)
        if wait:
            found = services.wait_ready(name, generation=found["generation"], timeout_s=timeout)
    if not _emit(json_path, found):
        _render(found)


@service_app.command("delete")
def delete(
    name: str = NAME, wait: bool = WAIT, timeout: float = TIMEOUT, server: str = SERVER, token: str = TOKEN,
    ca: Path | None = CA, json_path: Path | None = JSON,
) -> None:  # fmt: skip
    """Delete a service: its replicas finish their requests, then stop."""
    with _services(server, token, ca) as services:
        found = services.delete(name)
        if wait:
            services.wait_gone(name, timeout_s=timeout)
    if not _emit(json_path, found):
        console.print(f"service {name} {'deleted' if wait else 'is being deleted (replicas draining)'}")
