"""FastAPI glue shared by every skyline server: JSON errors, bearer-token auth, roles, body and rate limits.

A server does three things::

    app = FastAPI()
    install_error_handlers(app)                       # errors → JSON, body size limit
    authority = TokenAuthority(tokens_path)
    limiter = RateLimiter(rate_per_s=50, burst=100)   # optional, per token

    @app.post("/v1/jobs")
    def submit(spec: JobIn, who: Principal = Depends(require(authority, "create", "jobs", limiter=limiter))):
        ...

Answers: 401 + ``WWW-Authenticate: Bearer`` (no, malformed, unknown, expired or revoked token), 403 (the
role does not allow it), 413 (body too large), 422 (validation), 429 + ``Retry-After`` (rate limit) — every
one a JSON body ``{"error": "<message>"}``. Messages never contain the token.

Pitfall: in a module with ``from __future__ import annotations``, FastAPI evaluates an endpoint's
annotations as strings in the MODULE's globals, so ``who: Annotated[Principal, Depends(require(authority,
...))]`` inside an app factory (``authority`` local) silently becomes a required query parameter (422
"query.who: Field required"). There, write the dependency as a default, ``who: Principal =
Depends(dep)``, or drop the future import from that module.
"""

# No `from __future__ import annotations`: FastAPI must resolve the closures' `Annotated[..., Depends(x)]`
# parameters at runtime, and string annotations cannot see a closure's local ``x``.

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Self

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyline.errors import AuthError, ConfigError, OverloadedError, PermissionDeniedError, SkylineError
from skyline.security.rbac import Principal, authorize, check_names
from skyline.security.tokens import TokenAuthority

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BodySizeLimitMiddleware",
    "RateLimiter",
    "bearer_principal",
    "error_response",
    "install_error_handlers",
    "require",
]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

_bearer_scheme = HTTPBearer(auto_error=False, description="A token from 'skyline token create'.")


def error_response(exc: SkylineError) -> JSONResponse:
    """The JSON answer for a SkylineError: its ``http_status``, ``{"error": message}`` and helpful headers."""
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError) and not isinstance(exc, PermissionDeniedError):
        headers["WWW-Authenticate"] = 'Bearer realm="skyline"'
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse({"error": str(exc)}, status_code=exc.http_status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    # Only loc/msg/type: the raw input may be huge, binary or secret, so it is never echoed back.
    details = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    parts = [f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5]]
    return "invalid request: " + "; ".join(parts), details


def install_error_handlers(app: FastAPI, *, max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES) -> None:
    """Map every error to a JSON ``{"error": ...}`` body and (unless None) cap request bodies at ``max_body_bytes``."""

    async def on_skyline_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SkylineError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, details = _validation_message(exc)
        return JSONResponse({"error": message, "detail": details}, status_code=422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: answer without internals (no traceback, no secrets); the server logs it.
        return JSONResponse({"error": "internal server error"}, status_code=500)

    app.add_exception_handler(SkylineError, on_skyline_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
    if max_body_bytes is not None:
        app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=max_body_bytes)


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_body_bytes`` with 413, by header and while streaming (chunked)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        if max_body_bytes <= 0:
            raise ConfigError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        await JSONResponse({"error": message}, status_code=status)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        too_large = f"request body exceeds the limit of {limit} bytes; send a smaller body"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(scope, receive, send, 400, "invalid Content-Length header")
                    return
                if declared > limit:
                    await self._refuse(scope, receive, send, 413, too_large)
                    return
        # Read the body here (bounded) so that a chunked body cannot grow past the limit inside the app.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # a disconnect: let the app see it
            body = message.get("body", b"")
            total += len(body)
            if total > limit:
                await self._refuse(scope, receive, send, 413, too_large)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replaying_receive() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replaying_receive, send)


class RateLimiter:
    """A token bucket per key (the token id): ``burst`` requests at once, refilled at ``rate_per_s``."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if not rate_per_s > 0 or burst < 1:
            raise ConfigError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s, self.burst, self._clock, self._max_keys = rate_per_s, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens left, time of last update)
        self._lock = threading.Lock()

    @classmethod
    def per_token(cls, rate_per_s: float) -> Self:
        """The limit every skyline API applies with ``--rate-limit``: ``rate_per_s``, bursts of two seconds'
        worth (a client that paused may catch up briefly; a flood is cut after two seconds)."""
        return cls(rate_per_s=rate_per_s, burst=max(1, round(2 * rate_per_s)))

    def check(self, key: str) -> None:
        """Spend one request for ``key`` or raise `OverloadedError` (HTTP 429) with the wait in seconds."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait_s = (1.0 - tokens) / self.rate_per_s
                raise OverloadedError(
                    f"rate limit of {self.rate_per_s:g} requests/s (burst {self.burst}) exceeded for this token; "
                    f"retry in {wait_s:.2f} s",
                    retry_after_s=wait_s,
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_keys:  # forget the oldest buckets: memory stays bounded
                for stale in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self._max_keys // 2]:
                    del self._buckets[stale]


def _principal(
    authority: TokenAuthority,
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    limiter: RateLimiter | None,
) -> Principal:
    if credentials is None:
        raise AuthError("missing bearer token; send the header 'Authorization: Bearer <token>'")
    principal = authority.verify(credentials.credentials)
    request.state.principal = principal  # the audit middleware records who
    if limiter is not None:
        limiter.check(principal.token_id)
    return principal


# The dependencies are ``async``: verifying a token is in-memory work (a hash and a dict look-up), and a
# plain ``def`` dependency costs a thread-pool hop per request — under the control plane's heartbeat
# storm that hop was a large part of the server's CPU per request.


def bearer_principal(
    authority: TokenAuthority, *, limiter: RateLimiter | None = None
) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the `Principal` of the request's bearer token (401 when absent or invalid).

    It also stores the principal in ``request.state.principal`` (the audit middleware records who).
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    ) -> Principal:
        return _principal(authority, request, credentials, limiter)

    return dependency


def require(
    authority: TokenAuthority, action: str, resource_kind: str, *, limiter: RateLimiter | None = None
) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's `Principal` once `authorize` allows ``action`` on ``resource_kind``.

    Ownership and model scopes depend on the resource, so endpoints acting on one job or one model call
    ``authorize(principal, action, kind, owner=..., model=...)`` again with those.
    """
    check_names(action, resource_kind)  # a typo fails when the app is built, not at request time

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    ) -> Principal:
        principal = _principal(authority, request, credentials, limiter)
        authorize(principal, action, resource_kind)
        return principal

    return dependency
