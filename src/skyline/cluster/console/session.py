"""Who is using the console: the bearer token in an HttpOnly cookie, and CSRF checks on every write.

The login form takes a token issued by ``skyline token create`` (or the admin token ``cluster up``
printed), checks it with the same `TokenAuthority` as the API, and keeps it in a cookie that scripts
cannot read (HttpOnly), that other sites' requests do not carry (SameSite=Strict), scoped to ``/ui``
and, over HTTPS, Secure. Every request verifies the token again, so a revoked or expired token logs the
console out at once. Why a cookie and not session storage: docs/console.md, "Access".

State-changing calls need the page's CSRF token (a form field or the ``X-CSRF-Token`` header) and, when
the browser sends one, an ``Origin`` equal to the console's own. The CSRF token is an HMAC of a fixed
label under the bearer token: unforgeable without the cookie, stable across server restarts, and it
reveals nothing about the token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from skyline.errors import AuthError, PermissionDeniedError
from skyline.security.rbac import Principal, is_allowed
from skyline.security.rbac import owner_scope as rbac_owner_scope
from skyline.security.tokens import TokenAuthority

COOKIE = "skyline_console"
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"skyline-console-csrf/1"


class LoginRequiredError(AuthError):
    """No valid console session: pages redirect to the login form, data endpoints answer 401."""


def csrf_for(token: str) -> str:
    return hmac.new(token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """The signed-in principal and the page's CSRF token (the bearer token itself is never rendered)."""

    principal: Principal
    csrf: str

    def can(self, action: str, kind: str, *, owner: str | None = None) -> bool:
        """What the ONE permission table allows: templates show an action only where this is True."""
        return is_allowed(self.principal, action, kind, owner=owner)


def owner_scope(principal: Principal) -> str | None:
    """Whose jobs the principal may read (as in the API's job list): `skyline.security.rbac.owner_scope`."""
    return rbac_owner_scope(principal, "jobs")


def session_of(request: Request, authority: TokenAuthority) -> Session:
    """The request's session from its cookie; `LoginRequiredError` when absent, unknown, revoked or expired."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequiredError("sign in to the console with a bearer token")
    try:
        principal = authority.verify(token)
    except AuthError as exc:
        raise LoginRequiredError(f"the console session ended: {exc}") from None
    request.state.principal = principal  # the audit log records who made each console write
    return Session(principal, csrf_for(token))


def check_csrf(request: Request, session: Session, form_token: str | None) -> None:
    """Refuse (403) a write without this session's CSRF token or from another origin."""
    sent = request.headers.get(CSRF_HEADER) or form_token or ""
    if not hmac.compare_digest(sent, session.csrf):
        raise PermissionDeniedError(
            "missing or wrong CSRF token on a console write; reload the page and try again"
        )
    check_origin(request)


def check_origin(request: Request) -> None:
    """Refuse (403) a post that the browser says comes from another site (sign-in included: no login CSRF)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        raise PermissionDeniedError(f"a console write from origin {origin!r} was refused (cross-site)")


def own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path inside the console (no open redirect)."""
    if not target:
        return "/ui/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return "/ui/"
    return target
