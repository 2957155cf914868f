"""What the security checks know about one live HTTP API: `ApiTarget`, the `Rule` guarding each operation,
how a token travels (a bearer header, or the console's cookie), and the shared start-up helpers.

A target says, for each operation of its OpenAPI document, which (action, resource kind) of the ONE
permission table guards it (`Rule`; a tuple: all of them), that it is public (``None``), that any valid
token passes (`STATIC`), or that the operation takes the credential in its body (`SIGN_IN`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "SIGN_IN",
    "STATIC",
    "ApiTarget",
    "Guard",
    "RateLimit",
    "Rule",
    "TargetFactory",
    "TlsPair",
    "bearer",
    "role_tokens",
    "serve_app",
]


@dataclass(frozen=True, slots=True)
class Rule:
    """The permission an operation needs: ``authorize(principal, action, kind)``."""

    action: str
    kind: str


STATIC = Rule("static", "token")  # any valid token passes (a session without a permission of its own)
SIGN_IN = Rule("sign-in", "token")  # the credential travels in the form body: valid → allowed, else 401
Guard = Rule | tuple[Rule, ...] | None  # a tuple: every rule must allow; None: public


def bearer(token: str | None) -> dict[str, str]:
    """The headers that carry ``token`` to an API that takes bearer tokens."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A per-token rate limit the server enforces on ``operation`` ("GET /v1/models"): 429 + Retry-After
    once a token spent ``burst`` requests faster than ``rate_per_s``."""

    operation: str
    rate_per_s: float
    burst: int
    caller: str = "invoker"  # whose token spends its budget
    url: str | None = None  # where, when not the target's own URL


@dataclass(slots=True, kw_only=True)
class ApiTarget:
    name: str
    url: str
    tokens: Mapping[str, str]  # role name (or "edge") → a valid token of that role
    rules: Mapping[str, Guard]  # "GET /v1/jobs/{job_id}" → what guards it
    path_values: Mapping[str, str] = field(default_factory=dict)  # sample values for the matrix
    body_values: Mapping[str, Any] = field(default_factory=dict)  # JSON body fields pinned in some fuzz runs
    body_limit_bytes: int | None = None  # the server's documented request body cap, if any
    fuzz_token: str = "admin"  # the most privileged token: lets fuzz cases reach the handlers
    document: Mapping[str, Any] | None = None  # its OpenAPI document, where the server serves none
    credentials: Callable[[str | None], dict[str, str]] = bearer  # the headers that carry a token
    sign_in: str | None = None  # where a page sends a caller without a session (answers 401 by redirect)
    rate_limit: RateLimit | None = None


TlsPair = tuple[Path, Path]  # (certificate, private key)


class TargetFactory(Protocol):
    def __call__(self, folder: Path, tls: TlsPair | None = None) -> AbstractContextManager[ApiTarget]: ...


@contextmanager
def serve_app(app: Any, *, tls: TlsPair | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Run an ASGI app on a free 127.0.0.1 port in a thread (HTTPS with ``tls``); the context yields its URL."""
    from skyline.serving.server import BackgroundServer

    with BackgroundServer(app, tls=tls, start_timeout_s=timeout_s) as server:
        yield server.url


def role_tokens(authority: Any) -> dict[str, str]:
    """A token of every role from ``authority`` (subject ``<role>-1``; the admin's is the bootstrap one)."""
    from skyline.security.rbac import Role

    tokens = {"admin": authority.bootstrap_admin() or authority.issue("root", Role.ADMIN)}
    for role in Role:
        if role is not Role.ADMIN:
            tokens[role.value] = authority.issue(f"{role.value}-1", role)
    return tokens
