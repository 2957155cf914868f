"""`ServiceSpec`: a long-running inference service — its replica template, how it scales, how it is routed.

Built from CLI flags, a YAML file or the HTTP body (the same field names), validated here once. A service's
replicas are one-replica jobs of kind ``service`` made from ``replica`` (a `JobRequest`); each gets its port
in ``port_env``, and receives traffic only after ``readiness`` answers 200 on it.

```yaml
name: mlp
command: skyline serve --repo models --port $PORT --insecure-no-auth-local-only
replicas: 2           # to start with; the autoscaler moves it within [min_replicas, max_replicas]
min_replicas: 1
max_replicas: 8
model: mlp:1          # optional: the readiness probe then checks that version is served
slo_p99_ms: 200
autoscale: {mode: predictive, target_rps_per_replica: 20, step_s: 15, forecaster: gbdt}
routing: {max_concurrency: 4, queue_limit: 100, hold_s: 30, affinity_header: X-Session-Id}
```
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skyline.cluster.spec import MAX_REPLICAS, JobRequest, request_from_mapping
from skyline.core import JobKind
from skyline.errors import ConfigError

AUTOSCALE_MODES = ("predictive", "reactive", "off")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_REPLICA_FIELDS = frozenset({"command", "cpus", "memory_mib", "gpus", "tier", "tiers", "priority", "env"})


def _positive(name: str, value: float | None, *, allow_none: bool = False, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = value is not None and math.isfinite(value) and (value >= 0 if zero else value > 0)
    if not ok:
        raise ConfigError(f"{name} must be a finite number {'≥' if zero else '>'} 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoscaleSpec:
    """How the replica count follows demand (requests per ``step_s``).

    ``predictive``: a forecaster from the registry, refitted on the service's own request history every
    ``refit_every_steps`` steps, sizes for the P90 of demand over the replica start-up lead, with the
    reactive rule as a floor. ``reactive``: Kubernetes-HPA-like on the last step's rate (utilisation
    ``target_utilisation`` of ``target_rps_per_replica``, scale-down stabilised over ``window_steps``).
    ``cooldown_s``: no scale-down sooner than this after a scale-up. ``startup_s``: the lead a new replica
    needs until it is ready (None: measured from the service's own replicas).
    """

    mode: str = "off"
    target_rps_per_replica: float | None = None
    step_s: float = 15.0
    forecaster: str = "gbdt"
    target_utilisation: float = 0.7
    window_steps: int = 3
    cooldown_s: float = 60.0
    startup_s: float | None = None
    refit_every_steps: int = 60

    def __post_init__(self) -> None:
        if self.mode not in AUTOSCALE_MODES:
            raise ConfigError(f"autoscale mode {self.mode!r} is unknown; choose {', '.join(AUTOSCALE_MODES)}")
        if self.mode != "off" and self.target_rps_per_replica is None:
            raise ConfigError(
                f"--autoscale {self.mode} needs --target-rps (requests/s one replica serves within the SLO; "
                "measure one replica with 'skyline bench serve')"
            )
        _positive("target_rps_per_replica", self.target_rps_per_replica, allow_none=True)
        _positive("autoscale step_s", self.step_s)
        _positive("cooldown_s", self.cooldown_s, zero=True)
        _positive("startup_s", self.startup_s, allow_none=True, zero=True)
        if not 0 < self.target_utilisation <= 1:
            raise ConfigError(f"target_utilisation must be in (0, 1], got {self.target_utilisation}")
        if self.window_steps < 1 or self.refit_every_steps < 1:
            raise ConfigError("window_steps and refit_every_steps must be ≥ 1")
        from skyline.scheduling.forecasting import FORECASTERS

        if self.forecaster not in FORECASTERS:
            raise ConfigError(
                f"unknown forecaster {self.forecaster!r}; choose one of {', '.join(sorted(FORECASTERS))}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingSpec:
    """How the gateway treats the service's requests.

    ``max_concurrency``: requests one replica is given at once (None: unlimited); beyond it requests wait
    at the gateway in a queue of ``queue_limit`` for at most ``hold_s`` (also while scaling up from zero),
    then 429 (queue full) or 503 (no replica in time). ``affinity_header``: requests carrying that header
    go to the same replica while it has room (an LLM's prefix cache keeps hitting). ``drain_timeout_s``:
    how long a replica being retired may finish its requests. ``auth``: the gateway admits only requests
    with a control-plane bearer token allowed to ``invoke`` the service's model (an ``invoker`` token,
    possibly scoped to models), each token at most ``rate_limit_per_s`` (then 429); the checked token is not
    passed on to the replica (it runs its deployer's code). Without ``auth`` every header goes on.
    """

    max_concurrency: int | None = None
    queue_limit: int = 100
    hold_s: float = 30.0
    timeout_s: float = 60.0
    affinity_header: str | None = None
    drain_timeout_s: float = 30.0
    auth: bool = False
    rate_limit_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.rate_limit_per_s is not None and not (self.auth and self.rate_limit_per_s > 0):
            raise ConfigError("rate_limit_per_s (per token) needs auth: true and a rate > 0")
        if self.max_concurrency is not None and not 1 <= self.max_concurrency <= 100_000:
            raise ConfigError(f"max_concurrency must be 1..100000 or unset, got {self.max_concurrency}")
        if not 0 <= self.queue_limit <= 1_000_000:
            raise ConfigError(f"queue_limit must be 0..1000000, got {self.queue_limit}")
        for name in ("hold_s", "timeout_s", "drain_timeout_s"):
            _positive(name, getattr(self, name))
        if self.affinity_header is not None and not _HEADER.match(self.affinity_header):
            raise ConfigError(f"affinity_header {self.affinity_header!r} is not an HTTP header name")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    """A service: ``replica`` is the job each replica runs; counts, probe, model, SLO and the two policies."""

    name: str
    replica: JobRequest
    port_env: str = "PORT"
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 1
    model: str | None = None
    readiness: str | None = None
    slo_p99_ms: float | None = None
    startup_timeout_s: float = 300.0
    autoscale: AutoscaleSpec = field(default_factory=AutoscaleSpec)
    routing: RoutingSpec = field(default_factory=RoutingSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"service name {self.name!r} must be lowercase letters, digits and '-', starting with a letter"
            )
        if self.replica.kind is not JobKind.SERVICE or self.replica.replicas != 1:
            raise ConfigError("a service replica is one job of kind 'service' (replicas: 1)")
        if not _ENV_NAME.match(self.port_env):
            raise ConfigError(f"port_env {self.port_env!r} is not an environment variable name")
        if (
            not 0 <= self.min_replicas <= self.replicas <= self.max_replicas <= MAX_REPLICAS
            or self.max_replicas < 1
        ):
            raise ConfigError(
                f"replicas must satisfy 0 ≤ min ({self.min_replicas}) ≤ replicas ({self.replicas}) ≤ max "
                f"({self.max_replicas}) ≤ {MAX_REPLICAS}, and max ≥ 1"
            )
        if self.model is not None:
            model_version(self.model)
        if self.readiness is not None and not self.readiness.startswith("/"):
            raise ConfigError(f"readiness must be a path starting with '/', got {self.readiness!r}")
        _positive("slo_p99_ms", self.slo_p99_ms, allow_none=True)
        _positive("startup_timeout_s", self.startup_timeout_s)

    @property
    def readiness_path(self) -> str:
        """The probe: as given; else the model version's OIP ready route; else the server's."""
        if self.readiness is not None:
            return self.readiness
        if self.model is not None:
            name, version = model_version(self.model)
            return f"/v2/models/{name}/versions/{version}/ready"
        return "/v2/health/ready"

    def replica_request(self, *, port: int, generation: int) -> JobRequest:
        """The job one replica runs: the template with its port and the service's identity in its env."""
        env = dict(self.replica.env)
        env.update(
            {self.port_env: str(port), "SKYLINE_SERVICE": self.name, "SKYLINE_GENERATION": str(generation)}
        )
        if self.model is not None:
            name, version = model_version(self.model)
            env.update({"SKYLINE_MODEL_NAME": name, "SKYLINE_MODEL_VERSION": str(version)})
        labels = {**self.replica.labels, "service": self.name}  # policies tell service replicas by it
        return replace(self.replica, name=f"{self.name}-g{generation}", env=env, labels=labels)

    def to_json(self) -> dict[str, Any]:
        r = self.replica
        return {
            "name": self.name,
            "command": r.command,
            "cpus": r.resources.cpus,
            "memory_mib": r.resources.memory_mib,
            "gpus": r.resources.gpus,
            "tiers": sorted(str(t) for t in r.tiers),
            "priority": r.priority,
            "env": dict(r.env),
            "port_env": self.port_env,
            "replicas": self.replicas,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "model": self.model,
            "readiness": self.readiness,
            "slo_p99_ms": self.slo_p99_ms,
            "startup_timeout_s": self.startup_timeout_s,
            "autoscale": _fields(self.autoscale),
            "routing": _fields(self.routing),
        }


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def model_version(text: str) -> tuple[str, int]:
    """``"mlp:2"`` → ("mlp", 2); a clear error otherwise."""
    name, _, version = text.partition(":")
    if not name or not version.isdigit() or int(version) < 1:
        raise ConfigError(f"model must look like NAME:VERSION with a version ≥ 1 (e.g. mlp:1), got {text!r}")
    return name, int(version)


def _section(raw: Mapping[str, Any], key: str, cls: type[Any]) -> Any:
    section = raw.get(key) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"service field {key!r} must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(cls.__dataclass_fields__))
    if unknown:
        known = ", ".join(cls.__dataclass_fields__)
        raise ConfigError(f"unknown {key} field(s) {', '.join(unknown)}; known: {known}")
    try:
        return cls(**section)
    except TypeError as exc:
        raise ConfigError(f"service {key}: {exc}") from None


def service_from_mapping(raw: Mapping[str, Any]) -> ServiceSpec:
    """A `ServiceSpec` from a parsed YAML/JSON document (the field names of `ServiceSpec.to_json`)."""
    top = {"name", "port_env", "replicas", "min_replicas", "max_replicas", "model", "readiness"}
    top |= {"slo_p99_ms", "startup_timeout_s", "autoscale", "routing"}
    unknown = sorted(set(raw) - top - _REPLICA_FIELDS)
    if unknown:
        known = ", ".join(sorted(top | _REPLICA_FIELDS))
        raise ConfigError(f"unknown service field(s) {', '.join(unknown)}; known: {known}")
    replica = request_from_mapping(
        {k: v for k, v in raw.items() if k in _REPLICA_FIELDS} | {"kind": "service"}
    )
    replicas = raw.get("replicas", 1)
    counts = {
        "replicas": replicas,
        "min_replicas": raw.get("min_replicas", min(replicas, 1) if isinstance(replicas, int) else 1),
        "max_replicas": raw.get("max_replicas", replicas),
    }
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"service field {key!r} must be a whole number, got {value!r}")
    return ServiceSpec(
        name=str(raw.get("name", "")),
        replica=replica,
        port_env=str(raw.get("port_env", "PORT")),
        model=None if raw.get("model") is None else str(raw["model"]),
        readiness=None if raw.get("readiness") is None else str(raw["readiness"]),
        slo_p99_ms=raw.get("slo_p99_ms"),
        startup_timeout_s=raw.get("startup_timeout_s", 300.0),
        autoscale=_section(raw, "autoscale", AutoscaleSpec),
        routing=_section(raw, "routing", RoutingSpec),
        **counts,
    )


def load_service_file(path: Path) -> dict[str, Any]:
    """The mapping in a service YAML file (flags may then override fields before it is validated)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read service file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"service file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"service file {path} must hold a mapping (name: ..., command: ...)")
    return raw
