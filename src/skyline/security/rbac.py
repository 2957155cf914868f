"""Roles and the ONE permission table every skyline server consults (deny by default).

Modelled on Kubernetes RBAC: a role grants a set of actions on a kind of resource; anything not granted is
refused. Two scopes narrow a grant further:

- **ownership**: an ``operator`` may act on jobs only when it owns them. Servers pass ``owner=`` (the job's
  owner subject) when they act on one job; list endpoints call without ``owner`` and filter with `owns`.
- **model scope**: a principal whose ``models`` is non-empty may touch only those models (``model=``).

The control plane, the inference server and the edge/uplink endpoints all call `authorize`; none keeps its
own table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from skyline.errors import ConfigError, PermissionDeniedError

__all__ = [
    "ACTIONS",
    "PERMISSIONS",
    "RESOURCE_KINDS",
    "Action",
    "Principal",
    "ResourceKind",
    "Role",
    "authorize",
    "check_names",
    "is_allowed",
    "owns",
]


class Role(StrEnum):
    """Who a token speaks for. Roles are additive grants; there is no implicit inheritance."""

    ADMIN = "admin"  # everything, including tokens and the audit log
    OPERATOR = "operator"  # submits and manages its own jobs; reads the cluster
    VIEWER = "viewer"  # reads, never writes
    AGENT = "agent"  # a node agent: registers its node, reports job state and metrics
    INVOKER = "invoker"  # calls models for inference (optionally scoped to some models)
    EDGE = "edge"  # an edge device: uplinks records, pulls signed model updates, invokes models


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    INVOKE = "invoke"


class ResourceKind(StrEnum):
    JOBS = "jobs"
    NODES = "nodes"
    METRICS = "metrics"
    MODELS = "models"
    REPOSITORY = "repository"
    UPLINK = "uplink"
    TOKENS = "tokens"
    AUDIT = "audit"


ACTIONS: frozenset[str] = frozenset(Action)
RESOURCE_KINDS: frozenset[str] = frozenset(ResourceKind)

_ALL = frozenset(Action)
_READ = frozenset({Action.READ})
_CRUD = frozenset({Action.READ, Action.CREATE, Action.UPDATE, Action.DELETE})


def _table(
    grants: dict[Role, dict[ResourceKind, frozenset[Action]]],
) -> Mapping[str, Mapping[str, frozenset[str]]]:
    return MappingProxyType(
        {
            str(role): MappingProxyType(
                {str(kind): frozenset(map(str, acts)) for kind, acts in kinds.items()}
            )
            for role, kinds in grants.items()
        }
    )


# role → resource kind → allowed actions. Absent = denied. Read top to bottom, this IS the access policy.
PERMISSIONS: Mapping[str, Mapping[str, frozenset[str]]] = _table(
    {
        Role.ADMIN: dict.fromkeys(ResourceKind, _ALL),
        Role.OPERATOR: {
            ResourceKind.JOBS: _CRUD,  # own jobs only (ownership scope)
            ResourceKind.NODES: _READ,
            ResourceKind.METRICS: _READ,
            ResourceKind.MODELS: frozenset({Action.READ, Action.INVOKE}),
            ResourceKind.REPOSITORY: _READ,
        },
        Role.VIEWER: {
            ResourceKind.JOBS: _READ,
            ResourceKind.NODES: _READ,
            ResourceKind.METRICS: _READ,
            ResourceKind.MODELS: _READ,
            ResourceKind.REPOSITORY: _READ,
        },
        Role.AGENT: {
            ResourceKind.NODES: frozenset({Action.READ, Action.CREATE, Action.UPDATE}),
            # Read only: an agent reports its replicas' state through its node (update nodes); updating
            # jobs would let one node's token rewrite a service's command, run on every other node.
            ResourceKind.JOBS: _READ,
            ResourceKind.METRICS: frozenset({Action.READ, Action.CREATE}),
        },
        Role.INVOKER: {
            ResourceKind.MODELS: frozenset({Action.READ, Action.INVOKE}),
        },
        Role.EDGE: {
            ResourceKind.UPLINK: frozenset({Action.READ, Action.CREATE}),
            ResourceKind.MODELS: frozenset({Action.READ, Action.INVOKE}),
            ResourceKind.REPOSITORY: _READ,
            ResourceKind.METRICS: frozenset({Action.CREATE}),
        },
    }
)

# (role, resource kind) pairs whose grant covers only resources the principal owns.
OWNER_SCOPED: frozenset[tuple[str, str]] = frozenset({(Role.OPERATOR.value, ResourceKind.JOBS.value)})
# Resource kinds that a principal's ``models`` scope narrows.
MODEL_SCOPED: frozenset[str] = frozenset({ResourceKind.MODELS.value, ResourceKind.REPOSITORY.value})


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated caller: who (``subject``), with which role, via which token.

    ``models`` is the invoke scope: the model names this principal may touch; empty means all models.
    """

    subject: str
    role: Role
    token_id: str
    models: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.subject or not self.subject.strip():
            raise ConfigError("a principal needs a non-empty subject; pass subject='alice' or similar")
        role: object = self.role  # callers may pass the plain string ("admin")
        try:
            object.__setattr__(self, "role", Role(str(role)))
        except ValueError:
            raise ConfigError(
                f"unknown role {role!r}; roles are {', '.join(r.value for r in Role)}"
            ) from None
        object.__setattr__(self, "models", frozenset(self.models))


def owner_scope(principal: Principal, resource_kind: str) -> str | None:
    """Whose ``resource_kind`` a listing shows the principal: its own where its grant is scoped to what it
    owns (an operator's jobs), everyone's otherwise (None)."""
    return principal.subject if (principal.role.value, resource_kind) in OWNER_SCOPED else None


def owns(principal: Principal, owner: str | None) -> bool:
    """True when ``owner`` is this principal's subject (used by list endpoints to filter jobs)."""
    return owner is not None and owner == principal.subject


def check_names(action: str, resource_kind: str) -> None:
    """Raise `ConfigError` for an action or resource kind that the table does not know."""
    # A typo in a server's call must fail loudly in its tests, not silently deny (or allow) in production.
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; actions are {', '.join(sorted(ACTIONS))}")
    if resource_kind not in RESOURCE_KINDS:
        raise ConfigError(
            f"unknown resource kind {resource_kind!r}; kinds are {', '.join(sorted(RESOURCE_KINDS))}"
        )


def _denial(
    principal: Principal, action: str, resource_kind: str, owner: str | None, model: str | None
) -> str | None:
    """Why the table refuses this call, or None when it allows it."""
    role = principal.role.value
    granted = PERMISSIONS.get(role, {}).get(resource_kind, frozenset())
    if action not in granted:
        return f"role {role!r} may not {action} {resource_kind}"
    if (role, resource_kind) in OWNER_SCOPED and owner is not None and owner != principal.subject:
        return f"role {role!r} may {action} only its own {resource_kind}, and this one belongs to another subject"
    if (
        resource_kind in MODEL_SCOPED
        and principal.models
        and model is not None
        and model not in principal.models
    ):
        return f"this token is scoped to models {sorted(principal.models)}, not {model!r}"
    return None


def is_allowed(
    principal: Principal,
    action: str,
    resource_kind: str,
    *,
    owner: str | None = None,
    model: str | None = None,
) -> bool:
    """Whether `authorize` would let this call through (no exception)."""
    check_names(action, resource_kind)
    return _denial(principal, action, resource_kind, owner, model) is None


def authorize(
    principal: Principal,
    action: str,
    resource_kind: str,
    *,
    owner: str | None = None,
    model: str | None = None,
) -> None:
    """Allow the call or raise `PermissionDeniedError` (HTTP 403). Deny by default.

    ``owner``: the subject owning the resource acted on (jobs); ``model``: the model name acted on.
    """
    check_names(action, resource_kind)
    reason = _denial(principal, action, resource_kind, owner, model)
    if reason is not None:
        raise PermissionDeniedError(
            f"permission denied for subject {principal.subject!r}: {reason}; ask an admin for a token "
            "with a role that grants it (see docs/security.md)"
        )
