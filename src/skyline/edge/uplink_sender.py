"""At-least-once delivery of the uplink queue to the cloud, with capped exponential backoff and jitter.

A batch is removed from the local store only after the cloud answered 2xx for it; a crash in between
re-sends the batch later and the cloud's idempotent ingestion drops the duplicates.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from skyline.edge.cloud_client import verifying_context
from skyline.edge.uplink_store import UplinkStore
from skyline.errors import ConfigError

UPLINK_PATH = "/v1/uplink"


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderConfig:
    """Where to send, how many records per request, how long to wait, how to back off."""

    cloud_url: str
    token: str | None = None
    batch_records: int = 64
    timeout_s: float = 5.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 5.0
    jitter: float = 0.2
    ca: Path | None = None  # the certificate (or CA) that the cloud's HTTPS certificate must chain to

    def __post_init__(self) -> None:
        if not self.cloud_url.startswith(("http://", "https://")):
            raise ConfigError(f"cloud_url must start with http:// or https://, got {self.cloud_url!r}")
        if self.batch_records < 1:
            raise ConfigError(f"batch_records must be >= 1, got {self.batch_records}")
        if self.timeout_s <= 0 or self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                "timeout_s and backoff_initial_s must be > 0 and backoff_max_s >= backoff_initial_s"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter}")


@dataclass(slots=True)
class SenderStats:
    """Counts since the sender started (the store keeps the durable counters)."""

    batches_sent: int = 0
    records_sent: int = 0
    failures: int = 0
    duplicates_reported: int = 0
    last_error: str = ""
    backoff_s: float = 0.0
    history: list[str] = field(default_factory=list)


class UplinkSender:
    """Drains an `UplinkStore` into the cloud's ``/v1/uplink``; call `send_once` or run `loop` in a thread."""

    def __init__(self, store: UplinkStore, config: SenderConfig, *, seed: int | None = None) -> None:
        self.store = store
        self.config = config
        self.stats = SenderStats()
        self._rng = random.Random(seed)
        headers = {"authorization": f"Bearer {config.token}"} if config.token else {}
        self._client = httpx.Client(
            base_url=config.cloud_url,
            timeout=config.timeout_s,
            headers=headers,
            verify=verifying_context(config.ca),
        )

    def close(self) -> None:
        self._client.close()

    def send_once(self) -> int:
        """Send the oldest batch; returns how many records the cloud confirmed (0 when empty or failed)."""
        batch = self.store.peek(self.config.batch_records)
        if not batch:
            return 0
        try:
            response = self._client.post(UPLINK_PATH, json={"records": [r.to_wire() for r in batch]})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return 0
        self.store.ack([r.id for r in batch])
        self.stats.batches_sent += 1
        self.stats.records_sent += len(batch)
        self.stats.duplicates_reported += int(body.get("duplicates", 0))
        return len(batch)

    def next_backoff(self) -> float:
        """Double the wait after each failure (capped), with ± jitter so many agents do not retry in step."""
        current = self.stats.backoff_s or self.config.backoff_initial_s / 2
        self.stats.backoff_s = min(self.config.backoff_max_s, current * 2)
        spread = self.stats.backoff_s * self.config.jitter
        return max(0.0, self.stats.backoff_s + self._rng.uniform(-spread, spread))

    def drain(self, *, deadline_s: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Send until the store is empty (True) or ``deadline_s`` seconds have passed (False)."""
        end = time.monotonic() + deadline_s
        while len(self.store):
            if time.monotonic() > end:
                return False
            if self.send_once():
                self.stats.backoff_s = 0.0
            else:
                sleep(min(self.next_backoff(), max(0.0, end - time.monotonic())))
        return True

    def loop(self, stop: threading.Event, *, idle_s: float = 0.2) -> None:
        """Run until ``stop`` is set: send while there is work, back off on failure, poll when idle."""
        while not stop.is_set():
            if not len(self.store):
                stop.wait(idle_s)
            elif self.send_once():
                self.stats.backoff_s = 0.0
            else:
                stop.wait(self.next_backoff())
