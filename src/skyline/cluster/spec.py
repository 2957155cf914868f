"""`JobRequest`: what a user submits to the control plane (a command, its resources, its gang size).

Built from CLI flags, a YAML file or the HTTP body; validated here once, whatever the source.
"""

from __future__ import annotations

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
        object.__setattr__(self, "tiers", frozenset(self.tiers))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"job field {key!r} must be a number, got {value!r}")
    return float(value)


def request_from_mapping(raw: Mapping[str, Any]) -> JobRequest:
    """A `JobRequest` from a parsed YAML/JSON document (the same field names as the HTTP API)."""
    known = {"command", "name", "cpus", "memory_mib", "gpus", "replicas", "kind", "tier", "tiers"}
    known |= {"priority", "env", "idempotency_key"}
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
    if not isinstance(env, dict):
        raise ConfigError(f"env must be a mapping of names to values, got {env!r}")
    replicas = raw.get("replicas", 1)
    memory = raw.get("memory_mib", 256)
    if not isinstance(replicas, int) or not isinstance(memory, int):
        raise ConfigError("replicas and memory_mib must be whole numbers")
    return JobRequest(
        command=str(raw.get("command", "")),
        name=str(raw.get("name", "")),
        resources=Resources.of(
            cpus=_number(raw, "cpus", 1.0), memory_mib=memory, gpus=_number(raw, "gpus", 0.0)
        ),
        replicas=replicas,
        kind=kind,
        tiers=frozenset(Tier.parse(str(t)) for t in tiers_raw),
        priority=int(raw.get("priority", 0)),
        env={str(k): str(v) for k, v in env.items()},
        idempotency_key=raw.get("idempotency_key"),
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
