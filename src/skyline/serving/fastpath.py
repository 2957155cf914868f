"""The hot path: ``POST /v2/models/{name}[/versions/{v}]/infer`` as a pure ASGI handler in front of FastAPI.

FastAPI's routing, dependency solving and response classes cost more CPU per request than a small model's
inference; this middleware answers inference calls itself (same checks, same JSON bodies, same errors)
and passes every other request on to the FastAPI app, which still documents the route in its OpenAPI.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from skyline.errors import AuthError, NotFoundError, SkylineError
from skyline.security.http import RateLimiter, error_response
from skyline.security.rbac import authorize
from skyline.security.tokens import TokenAuthority
from skyline.serving.manager import ModelManager
from skyline.serving.protocol import HEADER_LENGTH, encode_response, parse_request

_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_HEADER_LENGTH = HEADER_LENGTH.encode()
_log = logging.getLogger(__name__)


def parse_version(text: str | None) -> int | None:
    """A version from a URL segment (None when absent); NotFoundError when it cannot exist."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # "¹".isdigit() is True
        raise NotFoundError(f"model version {text!r} does not exist; versions are integers ≥ 1")
    return int(text)


class Guard:
    """Authentication, per-token rate limit and authorization of one request (a no-op without tokens)."""

    def __init__(self, authority: TokenAuthority | None, limiter: RateLimiter | None = None) -> None:
        self.authority = authority
        self.limiter = limiter

    def __call__(self, authorization: str | None, action: str, kind: str, model: str | None = None) -> None:
        if self.authority is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing bearer token; send the header 'Authorization: Bearer <token>'")
        principal = self.authority.verify(token.strip())
        if self.limiter is not None:
            self.limiter.check(principal.token_id)  # 429 + Retry-After once a token spends its burst
        authorize(principal, action, kind, model=model)


async def infer(
    manager: ModelManager,
    guard: Guard,
    *,
    name: str,
    version: str | None,
    authorization: str | None,
    header_length: str | None,
    body: bytes,
) -> tuple[bytes, int | None]:
    """One inference call: auth, parse, batch, encode. Returns the body and the binary header length."""
    guard(authorization, "invoke", "models", name)
    number = parse_version(version)
    parsed = parse_request(body, header_length)
    # No await between choosing the model and queueing on it: a hot reload cannot slip in between.
    model = manager.get(name, number)
    outputs = await model.infer(parsed.inputs)
    return encode_response(
        model=name,
        version=model.manifest.version,
        request=parsed,
        outputs=outputs,
        order=[o.name for o in model.manifest.outputs],
    )


class InferFastPath:
    """ASGI middleware answering inference calls directly; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, *, manager: ModelManager, guard: Guard, max_body_bytes: int) -> None:
        self.app, self.manager, self.guard, self.max_body_bytes = app, manager, guard, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _INFER_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            body = await self._body(receive)
            content, header_length = await infer(
                self.manager,
                self.guard,
                name=match.group(1),
                version=match.group(2),
                authorization=_text(headers.get(b"authorization")),
                header_length=_text(headers.get(_HEADER_LENGTH)),
                body=body,
            )
        except SkylineError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except _ClientGoneError:
            return  # nobody is left to answer
        except _BodyTooLargeError:
            await _send(
                send, 413, b'{"error":"request body exceeds the server limit; send a smaller body"}', []
            )
            return
        except Exception:  # a bug, not bad input: log it, answer without internals
            _log.exception("inference failed")
            await _send(send, 500, b'{"error":"internal server error"}', [])
            return
        extra = [] if header_length is None else [(_HEADER_LENGTH, str(header_length).encode())]
        media = b"application/json" if header_length is None else b"application/octet-stream"
        await _send(send, 200, content, [(b"content-type", media), *extra])

    async def _body(self, receive: Receive) -> bytes:
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _BodyTooLargeError(Exception):
    pass


class _ClientGoneError(Exception):
    pass


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, Any]]) -> None:
    if not any(name == b"content-type" for name, _ in headers):
        headers = [(b"content-type", b"application/json"), *headers]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
