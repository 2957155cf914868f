"""Audit every state-changing HTTP call of a skyline server: who, what, when, result — one chained record each.

``install_audit(app, AuditLog(path))`` adds an ASGI middleware. For each POST, PUT, PATCH or DELETE it
appends one record once the response status is known: the subject and role that `bearer_principal`
stored in ``request.state.principal`` (``anonymous`` when authentication failed), the method and route,
and the status code. Refused calls (401, 403, 413, 422, 429) are audited too: attempts matter. Bodies,
headers and tokens are never recorded.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyline.security.audit import AuditLog
from skyline.security.rbac import Principal

__all__ = ["STATE_CHANGING_METHODS", "AuditMiddleware", "install_audit"]

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else str(scope.get("path", ""))


def _resource(template: str) -> str:
    # "/v1/jobs/{job_id}" → "jobs"; "/v2/models/{name}/infer" → "models": the first segment after a version.
    parts = [p for p in template.split("/") if p and not p.startswith("{")]
    while parts and len(parts[0]) <= 3 and parts[0][:1] == "v" and parts[0][1:].isdigit():
        parts = parts[1:]
    return parts[0] if parts else "/"


class AuditMiddleware:
    """Records one audit entry per state-changing request, after the response status is sent."""

    def __init__(self, app: ASGIApp, *, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in STATE_CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            principal = scope.get("state", {}).get("principal")
            template = _route_template(scope)
            self.log.append(
                subject=principal.subject if isinstance(principal, Principal) else "anonymous",
                role=principal.role.value if isinstance(principal, Principal) else "-",
                action=f"{scope['method']} {template}",
                resource=_resource(template),
                result=str(status[0]) if status else "500",
                detail={"path": str(scope.get("path", ""))},
            )


def install_audit(app: FastAPI, log: AuditLog) -> None:
    """Audit every state-changing call of ``app`` into ``log``."""
    app.add_middleware(AuditMiddleware, log=log)
