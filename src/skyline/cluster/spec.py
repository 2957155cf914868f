"""`JobRequest`: what a user submits to the control plane (a command, its resources, its gang size).

Built from CLI flags, a YAML file or the HTTP body; validated here once, whatever the source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from skyline.core import JobKind, Resources, Tier
from skyline.errors import ConfigError

MAX_REPLICAS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    """A job to run: ``command`` in a shell on each of ``replicas`` nodes, each with ``resources``.

    Replicas form a gang: all start together or none does. Each gets ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` (torch.distributed's environment) besides ``env``.
    ``resources.gpu_type`` names the GPU models it may use (``"V100|A100"``; None: any). ``estimate_s``
    is how long it should run (for the shortest-first policies; without it, the history of the same
    user's same command is used); ``job_type`` keys the throughput matrix of heterogeneity-aware
    policies; ``labels`` are free-form (a service replica carries ``service``).
    """

    command: str
    name: str = ""
    resources: Resources = field(default_factory=lambda: Resources.of(cpus=1, memory_mib=256))
    replicas: int = 1
    kind: JobKind = JobKind.BATCH
    tiers: frozenset[Tier] = frozenset()
    priority: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    estimate_s: float | None = None
    job_type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip():
            raise ConfigError("a job needs a non-empty command, e.g. --command 'python train.py'")
        if not isinstance(self.replicas, int) or not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(f"replicas must be between 1 and {MAX_REPLICAS}, got {self.replicas!r}")
        if self.resources.is_zero():
            raise ConfigError("a job must ask for some CPU, memory or GPU (e.g. --cpus 1)")
        if self.idempotency_key is not None and not 1 <= len(self.idempotency_key) <= 255:
            raise ConfigError("an idempotency key has 1 to 255 characters")
        for key in self.env:
            if not key or "=" in key:
                raise ConfigError(f"environment variable name {key!r} is invalid")
        if self.estimate_s is not None and not (math.isfinite(self.estimate_s) and self.estimate_s > 0):
            raise ConfigError(f"estimate_s must be a number of seconds > 0, got {self.estimate_s!r}")
        object.__setattr__(self, "tiers", frozenset(self.tiers))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


def request_body(request: JobRequest) -> dict[str, Any]:
    """The HTTP API's body for ``request`` (the same field names as a job file)."""
    res = request.resources
    body: dict[str, Any] = {
        "command": request.command, "name": request.name, "cpus": res.cpus, "memory_mib": res.memory_mib,
        "gpus": res.gpus, "replicas": request.replicas, "kind": str(request.kind),
        "tiers": sorted(map(str, request.tiers)), "priority": request.priority, "env": dict(request.env),
        "job_type": request.job_type, "labels": dict(request.labels),
    }  # fmt: skip
    if res.gpu_type is not None:
        body["gpu_type"] = res.gpu_type
    if request.estimate_s is not None:
        body["estimate_s"] = request.estimate_s
    return body


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"job field {key!r} must be a number, got {value!r}")
    return float(value)


def request_from_mapping(raw: Mapping[str, Any]) -> JobRequest:
    """A `JobRequest` from a parsed YAML/JSON document (the same field names as the HTTP API)."""
    known = {"command", "name", "cpus", "memory_mib", "gpus", "replicas", "kind", "tier", "tiers"}
    known |= {"priority", "env", "idempotency_key", "gpu_type", "estimate_s", "job_type", "labels"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown job field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    tiers_raw = raw.get("tiers", [raw["tier"]] if raw.get("tier") else [])
    if not isinstance(tiers_raw, list):
        raise ConfigError(f"tiers must be a list of tier names, got {tiers_raw!r}")
    try:
        kind = JobKind(str(raw.get("kind", "batch")))
    except ValueError:
        raise ConfigError(f"unknown job kind {raw.get('kind')!r}: use training, inference or batch") from None
    env = raw.get("env", {})
    labels = raw.get("labels", {})
    for field_name, value in (("env", env), ("labels", labels)):
        if not isinstance(value, dict):
            raise ConfigError(f"{field_name} must be a mapping of names to values, got {value!r}")
    replicas = raw.get("replicas", 1)
    memory = raw.get("memory_mib", 256)
    if not isinstance(replicas, int) or not isinstance(memory, int):
        raise ConfigError("replicas and memory_mib must be whole numbers")
    return JobRequest(
        command=str(raw.get("command", "")),
        name=str(raw.get("name", "")),
        resources=Resources.of(
            cpus=_number(raw, "cpus", 1.0),
            memory_mib=memory,
            gpus=_number(raw, "gpus", 0.0),
            gpu_type=str(raw["gpu_type"]) if raw.get("gpu_type") else None,
        ),
        replicas=replicas,
        kind=kind,
        tiers=frozenset(Tier.parse(str(t)) for t in tiers_raw),
        priority=int(raw.get("priority", 0)),
        env={str(k): str(v) for k, v in env.items()},
        idempotency_key=raw.get("idempotency_key"),
        estimate_s=_number(raw, "estimate_s", 0.0) if "estimate_s" in raw else None,
        job_type=str(raw.get("job_type", "")),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def load_job_file(path: Path) -> JobRequest:
    """Read a job spec from a YAML file (``command:``, ``cpus:``, ``replicas:`` ...)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"job file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"job file {path} must hold a mapping (command: ..., cpus: ...)")
    return request_from_mapping(raw)
