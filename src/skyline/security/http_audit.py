"""Audit every state-changing HTTP call of a skyline server: who, what, when, result — one chained record each.

``install_audit(app, AuditLog(path), authority=...)`` adds an ASGI middleware. For each POST, PUT, PATCH
or DELETE it appends one record, durably, before the last byte of the response is sent: who (the
principal `bearer_principal` stored in ``request.state.principal``; else, with ``authority``, the
bearer token's principal; else ``anonymous``), the method and route, and the status code. Refused calls (401, 403, 413, 422, 429) are audited too: attempts matter. Bodies,
headers and tokens are never recorded. ``paths`` narrows the audit to calls on those path prefixes (an app
whose POSTs are mostly reads, like the edge cloud's inference, audits only its writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyline.errors import SkylineError
from skyline.security.audit import AuditLog
from skyline.security.rbac import Principal
from skyline.security.tokens import TokenAuthority

__all__ = ["STATE_CHANGING_METHODS", "AuditMiddleware", "install_audit"]

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return str(scope.get("path", ""))
    # A route of a mounted app (the console at /ui) is relative to its mount: put the mount's prefix back.
    mount = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))) :]
    return mount + template


def _resource(template: str) -> str:
    # "/v1/jobs/{job_id}" → "jobs"; "/v2/models/{name}/infer" → "models": the first segment after a version.
    parts = [p for p in template.split("/") if p and not p.startswith("{")]
    while parts and len(parts[0]) <= 3 and parts[0][:1] == "v" and parts[0][1:].isdigit():
        parts = parts[1:]
    return parts[0] if parts else "/"


class AuditMiddleware:
    """Records one audit entry per state-changing request, after the response status is sent."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        log: AuditLog,
        authority: TokenAuthority | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.log = log
        self.authority = authority
        self.paths = tuple(paths) if paths is not None else None

    def _audited(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope.get("method") not in STATE_CHANGING_METHODS:
            return False
        path = str(scope.get("path", ""))
        return self.paths is None or any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths
        )

    def _who(self, scope: Scope) -> Principal | None:
        principal = scope.get("state", {}).get("principal")
        if isinstance(principal, Principal):
            return principal
        if self.authority is None:
            return None
        header = dict(scope.get("headers", ())).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.authority.verify(token.strip())
        except SkylineError:
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._audited(scope):
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        audited: list[bool] = []

        async def audit() -> None:
            if audited:
                return
            audited.append(True)
            principal = self._who(scope)
            template = _route_template(scope)
            # The append waits for the disk (fdatasync): off the event loop, so other requests go on.
            await run_in_threadpool(
                self.log.append,
                subject=principal.subject if principal is not None else "anonymous",
                role=principal.role.value if principal is not None else "-",
                action=f"{scope['method']} {template}",
                resource=_resource(template),
                result=str(status[0]) if status else "500",
                detail={"path": str(scope.get("path", ""))},
            )

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await audit()  # on disk before the client sees the end of the answer
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            await audit()  # the app failed before answering: still recorded (as 500)


def install_audit(
    app: FastAPI,
    log: AuditLog,
    *,
    authority: TokenAuthority | None = None,
    paths: Sequence[str] | None = None,
) -> None:
    """Audit every state-changing call of ``app`` into ``log`` (``authority`` names callers of apps that
    authenticate without `bearer_principal`; ``paths``, when given, limits it to those path prefixes)."""
    app.add_middleware(AuditMiddleware, log=log, authority=authority, paths=paths)
