"""Which replica gets a request: `Endpoint` (one ready replica and its kept-alive connections) and `Route`
(one service's endpoints, its waiting queue and its stats).

* least outstanding requests, ties rotated (what Envoy's LEAST_REQUEST and Ray Serve's router do);
* optional affinity: a request carrying the service's affinity header goes to the replica that ranks it
  highest by rendezvous hashing (the same one while the replica set holds), unless that replica has more
  than twice the least load plus two: an LLM's prefix cache keeps hitting without hot spots;
* ``max_concurrency`` per replica; beyond it, and while no replica is ready (scaling up from zero), a
  request waits in a bounded FIFO for up to ``hold_s`` (Knative's activator), then 429 / 503;
* a draining replica takes no new requests; an ejected one (the gateway saw it refuse or reset a
  connection) takes none until the controller has probed it ready again and publishes it anew.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skyline.cluster.gateway_http import Request, UpstreamConnection
from skyline.cluster.service_spec import RoutingSpec
from skyline.cluster.service_telemetry import ServiceStats
from skyline.errors import OverloadedError, UnavailableError
from skyline.serving.fastpath import Guard

MAX_IDLE_PER_REPLICA = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointInfo:
    """A ready replica as the service controller publishes it to the gateway."""

    id: str  # the replica's job id
    host: str
    port: int
    draining: bool = False


class Endpoint:
    """One replica: its address, requests in flight to it, and a pool of kept-alive connections."""

    def __init__(self, info: EndpointInfo) -> None:
        self.id, self.host, self.port = info.id, info.host, info.port
        self.hostport = f"{info.host}:{info.port}".encode()
        self.key = info.id.encode()
        self.draining = info.draining
        self.ejected = False
        self.outstanding = 0
        self._idle: list[UpstreamConnection] = []
        self._open: set[UpstreamConnection] = set()
        self._closed = False

    async def connection(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        """An idle kept-alive connection, or a new one (`OSError` when the replica refuses it)."""
        idle = self.idle()
        if idle is not None:
            return idle
        _, conn = await loop.create_connection(lambda: UpstreamConnection(self._lost), self.host, self.port)
        self._open.add(conn)
        return conn

    def idle(self) -> UpstreamConnection | None:
        """An idle kept-alive connection, if one is open."""
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.reused = True
                return conn
        return None

    def give_back(self, conn: UpstreamConnection) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE_PER_REPLICA:
            conn.close()
        else:
            self._idle.append(conn)

    def _lost(self, conn: UpstreamConnection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        """Retired: close idle connections now; busy ones close when their response ends."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _rank(key: bytes, endpoint: Endpoint) -> int:
    return zlib.crc32(endpoint.key, zlib.crc32(key))


class Route:
    """One service behind the gateway."""

    def __init__(
        self, name: str, routing: RoutingSpec, stats: ServiceStats, on_demand: Callable[[str], None]
    ) -> None:
        self.name, self.routing, self.stats = name, routing, stats
        self.on_demand = on_demand
        self.endpoints: dict[str, Endpoint] = {}
        self.waiters: deque[_Waiter] = deque()
        self.ejections: list[str] = []  # endpoints the gateway ejected since the controller last asked
        self._order: list[Endpoint] = []
        self._turn = 0
        self.closed = False
        self.model = name  # what a token must be allowed to invoke (the service's model name)
        self.guard: Guard | None = None  # when the service requires tokens
        self.guard_key: tuple[bool, float | None] = (False, None)
        self._affinity = routing.affinity_header.lower().encode() if routing.affinity_header else None

    def publish(self, routing: RoutingSpec, infos: Sequence[EndpointInfo]) -> None:
        """Replace the replica set; endpoints still present keep their connections and counts."""
        self.routing = routing
        self._affinity = routing.affinity_header.lower().encode() if routing.affinity_header else None
        fresh: dict[str, Endpoint] = {}
        for info in infos:
            endpoint = self.endpoints.get(info.id)
            if endpoint is None or (endpoint.host, endpoint.port) != (info.host, info.port):
                endpoint = Endpoint(info)
            endpoint.draining = info.draining
            fresh[info.id] = endpoint
        changed = [(e.id, e.draining) for e in fresh.values()] != [(e.id, e.draining) for e in self._order]
        for old_id, old in self.endpoints.items():
            if fresh.get(old_id) is not old:
                old.close()
                changed = True
        self.endpoints, self._order = fresh, list(fresh.values())
        if changed:  # (the controller publishes every pass: most publish nothing new)
            self._wake(len(self.waiters))

    def eject(self, endpoint: Endpoint) -> None:
        if not endpoint.ejected and self.endpoints.get(endpoint.id) is endpoint:
            endpoint.ejected = True
            self.ejections.append(endpoint.id)

    def pick(self, request: Request, exclude: set[str]) -> Endpoint | None:
        """The replica for ``request`` now, or None when none may take it."""
        limit = self.routing.max_concurrency
        order, count = self._order, len(self._order)
        best: Endpoint | None = None
        eligible: list[Endpoint] = []
        self._turn += 1
        for i in range(count):
            endpoint = order[(self._turn + i) % count]
            if endpoint.draining or endpoint.ejected or endpoint.id in exclude:
                continue
            if limit is not None and endpoint.outstanding >= limit:
                continue
            eligible.append(endpoint)
            if best is None or endpoint.outstanding < best.outstanding:
                best = endpoint
        if best is None or self._affinity is None:
            return best
        key = request.header(self._affinity)
        if key is None:
            return best
        preferred = max(eligible, key=lambda e: _rank(key, e))
        return preferred if preferred.outstanding <= 2 * best.outstanding + 2 else best

    def take(self, request: Request, exclude: set[str]) -> Endpoint | None:
        """`pick`, counting the request as outstanding on the replica picked."""
        endpoint = self.pick(request, exclude)
        if endpoint is not None:
            endpoint.outstanding += 1
        return endpoint

    async def acquire(self, request: Request, exclude: set[str]) -> Endpoint:
        """A replica with room, waiting in the queue when there is none (raises 429 / 503 errors)."""
        if not self.waiters:
            endpoint = self.take(request, exclude)
            if endpoint is not None:
                return endpoint
        if len(self.waiters) >= self.routing.queue_limit:
            raise OverloadedError(
                f"service {self.name}: {len(self.waiters)} requests already wait for a replica; retry later"
            )
        self.on_demand(self.name)
        return await self._wait(request, exclude)

    async def _wait(self, request: Request, exclude: set[str]) -> Endpoint:
        """Wait in line (FIFO: a woken request that finds no room keeps its place) until ``hold_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.routing.hold_s
        waiter = _Waiter()
        self.waiters.append(waiter)
        try:
            while True:
                waiter.future = loop.create_future()
                timer = loop.call_at(deadline, _expire, waiter.future)
                try:
                    woken = await waiter.future
                finally:
                    timer.cancel()
                if self.closed:
                    raise UnavailableError(f"service {self.name} was deleted while the request waited")
                if not woken:
                    raise UnavailableError(
                        f"service {self.name}: no replica could take the request within {self.routing.hold_s:g} s"
                    )
                endpoint = self.take(request, exclude)
                if endpoint is not None:
                    return endpoint
        finally:
            self.waiters.remove(waiter)
            self._wake(1)  # there may be room for the next one too

    def release(self, endpoint: Endpoint) -> None:
        endpoint.outstanding -= 1
        if self.waiters:
            self._wake(1)

    def _wake(self, count: int) -> None:
        """Let the first ``count`` waiting requests that are asleep look for room again, in order."""
        for waiter in self.waiters:
            if count <= 0:
                return
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_result(True)
                count -= 1

    def close(self) -> None:
        self.closed = True
        for endpoint in self._order:
            endpoint.close()
        self._wake(len(self.waiters))


class _Waiter:
    """A request waiting for room; its ``future`` is renewed each time it goes back to sleep."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[bool] | None = None


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
