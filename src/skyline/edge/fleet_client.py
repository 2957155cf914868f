"""An operator's client of the fleet API (`skyline.edge.fleet_api`): list agents, start a rollout and follow
it until it has succeeded or been rolled back (``skyline edge fleet``, ``skyline edge rollout``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from skyline.edge.cloud_client import verifying_context
from skyline.edge.rollout import RolloutSpec
from skyline.errors import AuthError, ConfigError, UnavailableError


class FleetClient:
    """``FleetClient(url, token).rollout(spec, on_event=print)``."""

    def __init__(self, url: str, *, token: str, ca: Path | None = None, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout_s,
            headers={"authorization": f"Bearer {token}"},
            verify=verifying_context(ca),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"the cloud at {self._http.base_url} is unreachable: {type(exc).__name__}"
            ) from exc
        if response.status_code in (401, 403):
            raise AuthError(f"the cloud refused the token ({response.status_code}): {response.text[:200]}")
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise ConfigError(f"the cloud refused the request ({response.status_code}): {message}")
        return response.json()

    def agents(self) -> list[dict[str, Any]]:
        """Every agent: labels, health, version served and desired, uplink backlog."""
        found: list[dict[str, Any]] = self._call("GET", "/v1/fleet")
        return found

    def start(self, spec: RolloutSpec) -> dict[str, Any]:
        """Start a rollout; returns its record (id, state, events)."""
        started: dict[str, Any] = self._call("POST", "/v1/rollouts", json=spec.to_json())
        return started

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/rollouts/{rollout_id}")
        return found

    def follow(
        self,
        rollout_id: int,
        *,
        on_event: Callable[[str], None],
        poll_s: float = 1.0,
        timeout_s: float = 3600.0,
    ) -> dict[str, Any]:
        """Poll the rollout until it is finished, calling ``on_event`` with each new event; its last record."""
        seen, deadline = 0, time.monotonic() + timeout_s
        while True:
            record = self.rollout(rollout_id)
            for event in record["events"][seen:]:
                on_event(event)
            seen = len(record["events"])
            if record["state"] != "running":
                return record
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"rollout {rollout_id} still runs after {timeout_s:.0f} s; follow it later"
                )
            time.sleep(poll_s)
