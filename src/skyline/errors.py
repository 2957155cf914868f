"""Every error skyline raises on purpose, in one tree.

    SkylineError                 root: something the user or operator can act on
    ├── ConfigError              a value, flag or file content is invalid          (CLI exit 2, HTTP 422)
    │   └── DataError            a data file is malformed: names file, line, field  (CLI exit 2, HTTP 422)
    ├── NotFoundError            an unknown name or id: policy, model, job, node    (CLI exit 2, HTTP 404)
    ├── ConflictError            the request clashes with current state             (CLI exit 2, HTTP 409)
    ├── CapacityError            the request cannot fit, now or ever                (CLI exit 2, HTTP 409)
    ├── OverloadedError          a bounded queue is full: retry later               (CLI exit 2, HTTP 429)
    ├── AuthError                missing or invalid credentials                     (CLI exit 2, HTTP 401)
    │   └── PermissionDeniedError  valid credentials, action not allowed            (CLI exit 2, HTTP 403)
    ├── IntegrityError           a hash, signature or chain does not verify         (CLI exit 2, HTTP 400)
    └── UnavailableError         a peer is down or too slow (timeouts)              (CLI exit 2, HTTP 503)

A message says what was wrong, the offending value, and how to fix it. Servers answer a SkylineError with
``http_status`` and a JSON body ``{"error": str(exc)}``; the CLI prints ``error: <message>`` on one line and
exits with code 2. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "IntegrityError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "SkylineError",
    "UnavailableError",
]


class SkylineError(Exception):
    """Root of every error skyline raises on purpose."""

    http_status: int = 400


class ConfigError(SkylineError, ValueError):
    """A configuration value, CLI flag or input is invalid."""

    http_status = 422


class DataError(ConfigError):
    """A data file (trace, series, dataset) is malformed; the message names file, line and field."""


class NotFoundError(SkylineError, LookupError):
    """An unknown name or id."""

    http_status = 404


class ConflictError(SkylineError):
    """The request clashes with the current state (a duplicate, a finished job, a held lock)."""

    http_status = 409


class CapacityError(SkylineError):
    """The request needs more resources than are (or could ever be) available."""

    http_status = 409


class OverloadedError(SkylineError):
    """A bounded queue is full; the caller should retry after ``retry_after_s``."""

    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthError(SkylineError):
    """Credentials are missing, malformed, expired or revoked."""

    http_status = 401


class PermissionDeniedError(AuthError):
    """The credentials are valid but their roles do not allow the action."""

    http_status = 403


class IntegrityError(SkylineError):
    """A hash, signature, version or hash chain does not verify: the data may have been tampered with."""

    http_status = 400


class UnavailableError(SkylineError):
    """A peer (cloud, server, agent) is unreachable or did not answer in time."""

    http_status = 503
