"""`ClusterClient`: the control plane's HTTP API from Python (used by the CLI, agents, tests, benchmarks).

Errors come back as the `skyline.errors` class matching the status (401 → AuthError, 404 →
NotFoundError ...) carrying the server's message; an unreachable server is `UnavailableError`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from skyline.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    SkylineError,
    UnavailableError,
)
from skyline.security.tls import client_ssl_context

_BY_STATUS: dict[int, type[SkylineError]] = {
    400: ConfigError,
    401: AuthError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ConfigError,
    422: ConfigError,
    429: OverloadedError,
}
FINISHED = ("succeeded", "failed", "cancelled")


class ClusterClient:
    """A bearer-token client of one control plane at ``server`` (``http://127.0.0.1:8470``)."""

    def __init__(
        self, server: str, token: str, *, timeout_s: float = 10.0, ca_path: Path | None = None
    ) -> None:
        """Over ``https://`` the server's certificate and host name are always verified: against
        ``ca_path`` (e.g. the server's self-signed certificate) or else the system's CAs."""
        if not server.startswith(("http://", "https://")):
            raise ConfigError(f"--server must be an http(s) URL like http://127.0.0.1:8470, got {server!r}")
        if ca_path is not None and not server.startswith("https://"):
            raise ConfigError(f"--ca is for an https:// server; {server} is plain HTTP")
        self.server = server.rstrip("/")
        verify: ssl.SSLContext | bool = client_ssl_context(ca_path) if server.startswith("https://") else True
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UnavailableError(f"control plane {self.server} unreachable: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            error = _BY_STATUS.get(response.status_code, UnavailableError)
            raise error(f"{message} (HTTP {response.status_code})")
        return response.json()

    # ------------------------------------------------------------------ jobs
    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self.request("POST", "/v1/jobs", json=body, headers=headers)
        return result

    def submit_with_retry(
        self, body: dict[str, Any], *, idempotency_key: str, attempts: int = 30, wait_s: float = 0.5
    ) -> dict[str, Any]:
        """Submit, retrying while the server is unreachable; the key makes retries safe (no duplicates)."""
        for attempt in range(attempts):
            try:
                return self.submit(body, idempotency_key=idempotency_key)
            except UnavailableError:
                if attempt == attempts - 1:
                    raise
                time.sleep(wait_s)
        raise UnavailableError("unreachable")  # the loop returns or raises; this satisfies type checkers

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}")
        return result

    def jobs(self, *, status: list[str] | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/jobs", params={"status": status or []})
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def logs(self, job_id: str, *, after: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}/logs", params={"after": after})
        return result

    def follow_logs(self, job_id: str, *, poll_s: float = 0.5) -> Iterator[dict[str, Any]]:
        """Every log line of the job as it arrives, until the job is finished and drained."""
        after = 0
        while True:
            page = self.logs(job_id, after=after)
            yield from page["lines"]
            after = page["next"]
            if not page["lines"] and page["status"] in FINISHED:
                return
            if not page["lines"]:
                time.sleep(poll_s)

    def wait(self, job_id: str, *, timeout_s: float = 120.0, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job is finished; `UnavailableError` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise UnavailableError(f"job {job_id} still {job['status']} after {timeout_s:g} s")
            time.sleep(poll_s)

    # ------------------------------------------------------------------ nodes and agents
    def nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/nodes")
        return result

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/v1/nodes", json=body)
        return result

    def heartbeat(self, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a beat (utilization and replica reports); the answer has ``assignments`` and, per
        report, ``reports`` (``accepted``, or ``error``)."""
        result: dict[str, Any] = self.request("POST", f"/v1/nodes/{node_id}/heartbeat", json=body)
        return result

    def send_logs(self, node_id: str, body: dict[str, Any]) -> None:
        self.request("POST", f"/v1/nodes/{node_id}/logs", json=body)

    def metrics(self, node_id: str, *, since: float = 0.0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/v1/nodes/{node_id}/metrics", params={"since": since}
        )
        return result

    def create_token(self, subject: str, role: str) -> str:
        result: dict[str, str] = self.request("POST", "/v1/tokens", json={"subject": subject, "role": role})
        return result["token"]
