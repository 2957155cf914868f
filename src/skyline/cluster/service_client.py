"""`ServiceClient`: the services' API from Python, over a `ClusterClient` (CLI, tests, demo, benchmark)."""

from __future__ import annotations

import time
from typing import Any

from skyline.cluster.client import ClusterClient
from skyline.errors import UnavailableError


class ServiceClient:
    """``/v1/services`` through ``client`` (its server, token and error mapping)."""

    def __init__(self, client: ClusterClient) -> None:
        self.client = client

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request("POST", "/v1/services", json=spec)
        return result

    def all(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.request("GET", "/v1/services")
        return result

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request("GET", f"/v1/services/{name}")
        return result

    def scale(self, name: str, **counts: int | None) -> dict[str, Any]:
        body = {k: v for k, v in counts.items() if v is not None}
        result: dict[str, Any] = self.client.request("POST", f"/v1/services/{name}/scale", json=body)
        return result

    def update(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request("POST", f"/v1/services/{name}/update", json=changes)
        return result

    def delete(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request("DELETE", f"/v1/services/{name}")
        return result

    def decisions(self, name: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.request(
            "GET", f"/v1/services/{name}/decisions", params={"limit": limit}
        )
        return result

    def metrics(self, name: str, *, since_s: float = 0.0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.request(
            "GET", f"/v1/services/{name}/metrics", params={"since": since_s}
        )
        return result

    def wait_ready(
        self,
        name: str,
        *,
        replicas: int | None = None,
        generation: int | None = None,
        timeout_s: float = 120.0,
    ) -> dict[str, Any]:
        """Poll until ``replicas`` (default: the desired count) are ready, all of ``generation`` if given."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(name)
            wanted = status["desired"] if replicas is None else replicas
            ready = [r for r in status["replicas"] if r["state"] == "ready"]
            fresh = generation is None or all(r["generation"] == generation for r in status["replicas"])
            if len(ready) == wanted and status["ready"] == wanted and fresh:
                return status
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"service {name}: {len(ready)} of {wanted} replicas ready after {timeout_s:g} s "
                    f"({status['message'] or 'no message'}); see 'skyline service status {name}'"
                )
            time.sleep(0.2)

    def wait_gone(self, name: str, *, timeout_s: float = 120.0) -> None:
        """Poll until a deleted service's replicas have drained and it is gone."""
        deadline = time.monotonic() + timeout_s
        while any(s["name"] == name for s in self.all()):
            if time.monotonic() > deadline:
                raise UnavailableError(f"service {name} still draining after {timeout_s:g} s")
            time.sleep(0.2)
