"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, with the right status.

Every error of the LLM server goes through here, including the bearer-token dependency's (401, 403,
429 + ``Retry-After``, from `skyline.security.http`), oversized bodies (413) and unknown routes (404),
so that OpenAI clients raise their usual exception classes. Bad input is a 400, as OpenAI answers it
(skyline's `ConfigError` is a 422 elsewhere); a bug is a 500 without internals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from skyline.errors import ConfigError, SkylineError
from skyline.security.http import BodySizeLimitMiddleware, error_response

__all__ = [
    "GenerationFailedError",
    "OpenAIBodySizeLimit",
    "install_openai_errors",
    "openai_error",
    "validation_error",
]

log = logging.getLogger(__name__)


class GenerationFailedError(Exception):
    """The engine failed while generating (a bug, not the client's mistake): HTTP 500 with the reason."""


_UNION_TAG = re.compile(r"[\[\]-]|^(str|int|float|bool)$")
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in OpenAI's shape."""
    body = {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _from_skyline(exc: SkylineError) -> JSONResponse:
    base = error_response(
        exc
    )  # the status and headers (WWW-Authenticate, Retry-After) of every skyline server
    keep = {k: v for k, v in base.headers.items() if k.lower() in ("www-authenticate", "retry-after")}
    status = 400 if isinstance(exc, ConfigError) else base.status_code
    return openai_error(status, str(exc), param=getattr(exc, "param", None), headers=keep)


def validation_error(errors: list[Any]) -> JSONResponse:
    """400 for a body that does not validate: the first problem, its field as ``param``; the input is never
    echoed (it may be huge or secret)."""
    first = errors[0] if errors else {}
    # pydantic names the member of a union it tried ("stop.constrained-str"): not a field, so dropped
    loc = [str(part) for part in first.get("loc", ()) if not _UNION_TAG.search(str(part))]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return openai_error(400, message, param=param)


def install_openai_errors(app: FastAPI) -> None:
    """Answer every error of ``app`` in OpenAI's shape."""

    async def on_skyline(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SkylineError)
        return _from_skyline(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error(list(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return openai_error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    async def on_generation_failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("generation failed answering %s: %s", request.url.path, exc)
        return openai_error(500, str(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return openai_error(500, "internal server error")

    app.add_exception_handler(SkylineError, on_skyline)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(GenerationFailedError, on_generation_failed)
    app.add_exception_handler(Exception, on_unexpected)


class OpenAIBodySizeLimit(BodySizeLimitMiddleware):
    """security's body limit (by header and while streaming), answering in OpenAI's shape."""

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        await openai_error(status, message)(scope, receive, send)
