"""`ServiceController`: the reconciler that keeps every service's replicas matching what was asked.

Each pass (every ``tick_s``, and at once when something asks: a deploy, a scale, a request waiting at a
service with no replica):

1. settle: a replica whose job ended on its own is ``exited`` (the service's failure count grows and the
   next start waits an exponential backoff, as Kubernetes' CrashLoopBackOff); one that lost its node or
   was preempted goes back to ``starting``; one never ready within ``startup_timeout_s`` is stopped;
2. probe: starting replicas every pass, ready ones every ``probe_every_s``; a replica is ``ready`` when
   its readiness path answers 200, unready again after three failed probes or when the gateway saw it
   refuse or drop a connection;
3. scale and roll: replicas of the service's current generation are created (one-replica jobs of kind
   ``service``: the scheduler places them like any job) or retired until ``desired`` are live; after an
   update, old-generation replicas are retired only while enough new ones are ready (at most one extra
   replica, none missing: a rolling update never drops below ``desired`` ready replicas);
4. retire by draining: a replica stops getting new requests, finishes those it has (or
   ``drain_timeout_s`` passes), then its job is cancelled;
5. publish the ready (and draining) replicas to the gateway.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from skyline.cluster.gateway import Gateway
from skyline.cluster.gateway_routing import EndpointInfo
from skyline.cluster.service_spec import model_version
from skyline.cluster.service_store import ReplicaView, ServiceRecord
from skyline.core.net import PortRange
from skyline.errors import ConfigError

if TYPE_CHECKING:
    from skyline.cluster.control import ControlPlane
    from skyline.cluster.store import Store

log = logging.getLogger("skyline.cluster.services")
FINISHED = ("succeeded", "failed", "cancelled")
PROBE_FAILURES_TO_UNREADY = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicesConfig:
    """The services loop: pass period, probes, replica ports, restart backoff, telemetry."""

    tick_s: float = 0.25
    probe_timeout_s: float = 1.0
    probe_every_s: float = 1.0
    ports: PortRange = field(default_factory=lambda: PortRange(first=30000, last=32767))
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    metrics_interval_s: float = 1.0
    retention_s: float = 8 * 86400.0

    def __post_init__(self) -> None:
        for name in ("tick_s", "probe_timeout_s", "probe_every_s", "backoff_base_s", "metrics_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"services {name} must be > 0, got {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_base_s or self.retention_s <= 0:
            raise ConfigError("backoff_max_s must be ≥ backoff_base_s and retention_s > 0")


@dataclass(slots=True)
class _Health:
    failed_probes: int = 0
    probed_at: float = float("-inf")
    draining_since: float | None = None


class ServiceController:
    """Reconciles services against the store, through the control plane (jobs) and the gateway (traffic)."""

    def __init__(self, store: Store, control: ControlPlane, gateway: Gateway, config: ServicesConfig) -> None:
        self.store, self.control, self.gateway, self.config = store, control, gateway, config
        self.ready_counts: dict[str, int] = {}
        self._health: dict[str, _Health] = defaultdict(_Health)
        self._demand: set[str] = set()
        self._rng = random.Random()  # its own: the module's global state belongs to the caller (hypothesis)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Told when a waiting request scaled a service up from zero (the autoscale loop records it).
        self.on_scale_from_zero: Callable[[ServiceRecord, int], None] | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._cancel_orphans()
        self._thread = threading.Thread(target=self._loop, name="skyline-services", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def demand(self, service: str) -> None:
        """A request waits at ``service`` for room (called on the gateway's thread): scale from zero now."""
        with self._lock:
            self._demand.add(service)
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the loop must survive a bad pass; the next one starts from the store again
                log.exception("services pass failed")

    def _cancel_orphans(self) -> None:
        """Replica jobs whose service row was never written (a crash between the two) are stopped."""
        for job_id in self.store.services.orphan_jobs():
            log.warning("cancelling orphaned service replica job %s", job_id)
            self.control.cancel(job_id)

    # ------------------------------------------------------------------ one pass
    def run_once(self) -> None:
        now = time.monotonic()
        services = self.store.services.find()
        by_service: dict[str, list[ReplicaView]] = defaultdict(list)
        for replica in self.store.services.replicas():
            by_service[replica.service_id].append(replica)
        ejected = self.gateway.ejections()
        with self._lock:
            demand, self._demand = self._demand, set()
        for i, record in enumerate(services):
            try:
                if self._settle(record, by_service.get(record.id, []), set(ejected.get(record.name, ()))):
                    services[i] = self.store.services.get(
                        record.name
                    )  # its backoff starts now, not next pass
            except Exception:  # one broken service never stops the others
                log.exception("service %s: settling its replicas failed", record.name)
        results = self.gateway.probe(
            self._probe_targets(services, by_service, now), timeout_s=self.config.probe_timeout_s
        )
        for record in services:
            try:
                self._reconcile(record, by_service.get(record.id, []), results, now, record.name in demand)
            except Exception:  # one broken service never stops the others
                log.exception("service %s: reconcile failed", record.name)
        alive = {r.job_id for replicas in by_service.values() for r in replicas}
        for job_id in [k for k in self._health if k not in alive]:
            del self._health[job_id]

    def _settle(self, record: ServiceRecord, replicas: list[ReplicaView], ejected: set[str]) -> bool:
        """Replicas' states from their jobs; True when one failed (the service's backoff changed)."""
        why = ""
        for replica in list(replicas):
            state = replica.state
            if replica.job_status in FINISHED:
                state = "retired" if state == "draining" else "exited"
                if state == "exited":
                    why = f"replica {replica.job_id} exited ({replica.job_status})"
            elif state == "ready" and (replica.job_status != "running" or replica.job_id in ejected):
                state = "starting"  # moved, preempted or seen dead: traffic only after a new probe
            elif state == "starting" and time.time() - replica.created_at > record.spec.startup_timeout_s:
                self.control.cancel(replica.job_id)
                state = "exited"
                why = f"replica {replica.job_id} not ready within {record.spec.startup_timeout_s:g} s"
            self._move(replicas, replica, state)
        if why:
            self._count_failure(record, why)
        return bool(why)

    def _count_failure(self, record: ServiceRecord, why: str) -> None:
        failures = record.failures + 1
        delay = min(self.config.backoff_base_s * 2 ** (failures - 1), self.config.backoff_max_s)
        log.warning("service %s: %s; next start in %.1f s", record.name, why, delay)
        self.store.services.set_backoff(
            record.id,
            failures=failures,
            next_start_at=time.time() + delay,
            message=f"{why}; restarting in {delay:g} s",
        )

    def _probe_targets(
        self, services: list[ServiceRecord], by_service: dict[str, list[ReplicaView]], now: float
    ) -> list[tuple[str, str, int, str]]:
        targets = []
        for record in services:
            path = record.spec.readiness_path
            for r in by_service.get(record.id, []):
                health = self._health[r.job_id]
                due = r.state == "starting" or (
                    r.state == "ready" and now - health.probed_at >= self.config.probe_every_s
                )
                if due and r.job_status == "running" and r.address is not None:
                    health.probed_at = now
                    targets.append((r.job_id, r.address, r.port, path))
        return targets

    def _reconcile(
        self,
        record: ServiceRecord,
        replicas: list[ReplicaView],
        probes: dict[str, bool],
        now: float,
        demand: bool,
    ) -> None:
        self._apply_probes(record, replicas, probes)
        if record.status == "deleting":
            self._delete(record, replicas, now)
            return
        if demand and record.desired == 0:
            self._scale_from_zero(record)
            record = self.store.services.get(record.name)
        self._scale(record, replicas, now)
        self._publish(record, replicas)

    def _apply_probes(
        self, record: ServiceRecord, replicas: list[ReplicaView], probes: dict[str, bool]
    ) -> None:
        for replica in list(replicas):
            ok = probes.get(replica.job_id)
            if ok is None:
                continue
            health = self._health[replica.job_id]
            health.failed_probes = 0 if ok else health.failed_probes + 1
            if replica.state == "starting" and ok:
                self._move(replicas, replica, "ready")
                if record.failures:
                    self.store.services.set_backoff(record.id, failures=0, next_start_at=0.0, message="")
            elif replica.state == "ready" and health.failed_probes >= PROBE_FAILURES_TO_UNREADY:
                self._move(replicas, replica, "starting")

    def _move(self, replicas: list[ReplicaView], replica: ReplicaView, state: str) -> None:
        """Record ``replica``'s new state, in the store and in this pass's list."""
        if state == replica.state:
            return
        self.store.services.set_replica_state(replica.job_id, state)
        replicas[replicas.index(replica)] = replace(replica, state=state)

    def _scale_from_zero(self, record: ServiceRecord) -> None:
        wanted = max(1, record.spec.min_replicas)
        self.store.services.set_desired(record.id, wanted)
        if self.on_scale_from_zero is not None:
            self.on_scale_from_zero(record, wanted)

    def _scale(self, record: ServiceRecord, replicas: list[ReplicaView], now: float) -> None:
        gen, desired = record.generation, record.desired
        live = [r for r in replicas if r.state in ("starting", "ready")]
        current = [r for r in live if r.generation == gen]
        old = [r for r in live if r.generation != gen]
        for r in [r for r in old if r.state != "ready"]:  # an old replica not serving yet: stop it now
            self._retire(replicas, r, now)
            old.remove(r)
        ready_current = sum(r.state == "ready" for r in current)
        surplus_old = max(ready_current + len(old) - desired, 0)
        for r in old[:surplus_old]:
            self._retire(replicas, r, now)
        old = old[surplus_old:]
        missing = desired - len(current)
        if missing > 0:
            room = missing if not old else max(desired + 1 - len(current) - len(old), 0)
            self._create(record, min(missing, room))
        elif missing < 0:
            # Retire what serves least: not-ready ones first, then the newest.
            ranked = sorted(current, key=lambda r: (r.state == "ready", -r.created_at))
            for r in ranked[:-missing]:
                self._retire(replicas, r, now)
        self._finish_drains(record, replicas, now)

    def _create(self, record: ServiceRecord, count: int) -> None:
        if count <= 0:
            return
        if record.failures and time.time() < record.next_start_at:
            return  # backing off after failures
        if record.failures:
            count = 1  # after failures, one at a time until one becomes ready
        used = self.store.services.ports_in_use()
        for _ in range(count):
            port = self._free_port(used)
            used.add(port)
            request = record.spec.replica_request(port=port, generation=record.generation)
            try:
                job, _ = self.control.submit(request, owner=record.owner)  # admitted like any job
            except ConfigError as exc:  # no node could ever hold a replica: say so, retry with backoff
                self._count_failure(record, str(exc))
                return
            self.store.services.add_replica(record.id, job.id, generation=record.generation, port=port)

    def _free_port(self, used: set[int]) -> int:
        ports = self.config.ports
        span = ports.last - ports.first + 1
        start = self._rng.randrange(span)
        for offset in range(span):
            port = ports.first + (start + offset) % span
            if port not in used:
                return port
        raise ConfigError(f"every service port in {ports.first}-{ports.last} is taken; widen --service-ports")

    def _retire(self, replicas: list[ReplicaView], replica: ReplicaView, now: float) -> None:
        """A ready replica drains first; one that serves nothing yet is stopped at once."""
        if replica.state == "ready":
            self._move(replicas, replica, "draining")
            self._health[replica.job_id].draining_since = now
        else:
            self.control.cancel(replica.job_id)
            self._move(replicas, replica, "retired")

    def _finish_drains(self, record: ServiceRecord, replicas: list[ReplicaView], now: float) -> None:
        draining = [r for r in replicas if r.state == "draining"]
        if not draining:
            return
        outstanding = self.gateway.outstanding(record.name)
        for r in draining:
            health = self._health[r.job_id]
            if health.draining_since is None:  # draining before a restart of the control plane
                health.draining_since = now
            if health.draining_since == now:
                # Not yet published as draining: the gateway may still send it new requests, and its
                # outstanding count can be 0 between two of them. It finishes at the next pass at the earliest.
                continue
            timed_out = now - health.draining_since > record.spec.routing.drain_timeout_s
            if outstanding.get(r.job_id, 0) == 0 or timed_out:
                if r.job_status not in FINISHED:
                    self.control.cancel(r.job_id)
                self._move(replicas, r, "retired")

    def _publish(self, record: ServiceRecord, replicas: list[ReplicaView]) -> None:
        endpoints = [
            EndpointInfo(id=r.job_id, host=r.address, port=r.port, draining=r.state == "draining")
            for r in replicas
            if r.state in ("ready", "draining") and r.address is not None
        ]
        self.ready_counts[record.name] = sum(not e.draining for e in endpoints)
        model = model_version(record.spec.model)[0] if record.spec.model else record.name
        self.gateway.publish(
            record.name, record.spec.routing, endpoints, slo_ms=record.spec.slo_p99_ms, model=model
        )

    def _delete(self, record: ServiceRecord, replicas: list[ReplicaView], now: float) -> None:
        for r in [r for r in replicas if r.state in ("starting", "ready")]:
            self._retire(replicas, r, now)
        self._finish_drains(record, replicas, now)
        if any(r.state == "draining" for r in replicas):
            self._publish(record, replicas)
            return
        self.gateway.remove(record.name)
        self.store.services.purge(record.id)
        self.ready_counts.pop(record.name, None)
        log.info("service %s deleted", record.name)
