"""`Gateway`: one stable endpoint per service, ``/services/<name>/...``, proxied to its ready replicas.

It runs its own event loop (uvloop) on a thread of the control plane's process; the service controller
publishes each service's ready replicas to it, takes its telemetry, and asks it to probe replicas (all
network I/O of the services loop happens on this one loop). A request:

1. is routed by `Route` (least outstanding, optional affinity, a bounded queue while no replica has
   room: 429 when the queue is full, 503 after ``hold_s``);
2. goes to the replica over a kept-alive connection, its path without the ``/services/<name>`` prefix;
   the response streams back as it arrives (server-sent events included);
3. if the replica refuses or drops the connection before answering, the replica is ejected and an
   idempotent request (GET/HEAD/OPTIONS/PUT/DELETE, an OIP or OpenAI inference POST, or any request with
   an ``Idempotency-Key``) is sent once more to another replica; otherwise, or if that fails too, the
   client gets 502 — a request is answered or refused, never dropped silently. A replica that times out
   (``timeout_s``) gives 504 and is not retried (a retry would double the load on a slow service).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from skyline.cluster.gateway_http import (
    ClientConnection,
    Headers,
    Request,
    Sink,
    UpstreamConnection,
    simple_response,
)
from skyline.cluster.gateway_routing import Endpoint, EndpointInfo, Route
from skyline.cluster.service_spec import RoutingSpec
from skyline.cluster.service_telemetry import ServiceStats, TelemetryWindow
from skyline.errors import OverloadedError, UnavailableError

log = logging.getLogger("skyline.cluster.gateway")
T = TypeVar("T")
PREFIX = b"/services/"
_INFERENCE = re.compile(
    rb"^/(v2/models/[^/?]+(/versions/[^/?]+)?/infer|v1/(chat/completions|completions|embeddings))(\?|$)"
)
_SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
_ABORTED = 502  # counted as an error: the client saw a cut response


def retryable(request: Request, target: bytes) -> bool:
    """May ``request`` be sent again to another replica after the first one died before answering?"""
    return (
        request.method in _SAFE_METHODS
        or (request.method == b"POST" and _INFERENCE.match(target) is not None)
        or request.header(b"idempotency-key") is not None
    )


def split_target(path: bytes) -> tuple[str | None, bytes]:
    """``/services/mlp/v2/models/mlp/infer`` → ("mlp", ``/v2/models/mlp/infer``); (None, path) otherwise."""
    if not path.startswith(PREFIX):
        return None, path
    rest = path[len(PREFIX) :]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    tail = rest[cut:]
    return rest[:cut].decode("latin-1"), tail if tail.startswith(b"/") else b"/" + tail


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int | None = None  # the status the client got; None: failed before any response byte
    failure: str = ""


class _Exchange(Sink):
    """One attempt of one request: forwards the replica's response to the client as it arrives."""

    def __init__(self, future: asyncio.Future[_Outcome], client: ClientConnection, request: Request,
                 conn: UpstreamConnection, endpoint: Endpoint) -> None:  # fmt: skip
        self.future, self.client, self.request = future, client, request
        self.conn, self.endpoint = conn, endpoint
        self.status: int | None = None
        self.keep_alive = request.keep_alive

    def response_head(self, status: int, headers: Headers, framed: bool) -> None:
        self.status = status
        self.keep_alive = self.request.keep_alive and (framed or self.request.http11)
        self.client.on_drain = lambda writable: self.conn.pause(not writable)
        self.client.respond_head(
            status, headers, chunk=not framed and self.request.http11, keep_alive=self.keep_alive
        )

    def response_body(self, data: bytes) -> None:
        self.client.respond_body(data)

    def response_end(self, reusable: bool) -> None:
        self.client.respond_end()
        if reusable:
            self.endpoint.give_back(self.conn)
        else:
            self.conn.close()
        if not self.future.done():
            self.future.set_result(_Outcome(self.status))

    def upstream_failed(self, exc: BaseException | None) -> None:
        if self.future.done():
            return
        if self.status is not None:  # part of the response was forwarded: the client must see it cut
            self.client.abort()
            self.future.set_result(_Outcome(_ABORTED, "connection lost mid-response"))
        else:
            self.future.set_result(_Outcome(None, f"connection lost ({exc or 'closed'})"))

    def timed_out(self) -> None:
        if self.future.done():
            return
        self.conn.close()
        if self.status is not None:
            self.client.abort()
            self.future.set_result(_Outcome(_ABORTED, "timed out mid-response"))
        else:
            self.future.set_result(_Outcome(None, "timeout"))


class Gateway:
    """The services' HTTP entry point; ``on_demand(service)`` is called when a request waits for room."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, on_demand: Callable[[str], None] | None = None
    ) -> None:
        self.host = host
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.on_demand = on_demand or (lambda _name: None)
        self.routes: dict[str, Route] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[ClientConnection] = set()

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout_s: float = 10.0) -> Gateway:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="skyline-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or self._server is None:
            raise UnavailableError(f"the gateway did not start on {self.url}")
        return self

    def _run(self, ready: threading.Event) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is in the lock; plain asyncio works, slower
            loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(loop.create_server(self._protocol, sock=self._sock))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _protocol(self) -> ClientConnection:
        conn = ClientConnection(self._handle, on_close=self._clients.discard)
        self._clients.add(conn)
        return conn

    def stop(self) -> None:
        if self.loop is None or self._thread is None:
            self._sock.close()
            return

        def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for route in self.routes.values():
                route.close()
            for client in list(self._clients):
                client.abort()
            assert self.loop is not None
            self.loop.call_later(0.05, self.loop.stop)

        self.loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the controller's side (any thread)
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the gateway's loop and return its result."""
        assert self.loop is not None, "start() the gateway first"
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def publish(self, service: str, routing: RoutingSpec, endpoints: Sequence[EndpointInfo],
                *, slo_ms: float | None = None) -> None:  # fmt: skip
        """Set ``service``'s replicas (ready ones; ``draining`` ones finish what they have)."""
        self.call(self._publish, service, routing, tuple(endpoints), slo_ms)

    def _publish(self, service: str, routing: RoutingSpec, endpoints: tuple[EndpointInfo, ...],
                 slo_ms: float | None) -> None:  # fmt: skip
        route = self.routes.get(service)
        if route is None:
            assert self.loop is not None
            stats = ServiceStats(time.perf_counter(), slo_ms=slo_ms)
            route = self.routes[service] = Route(service, routing, stats, self.on_demand)
        route.stats.slo_ms = slo_ms
        route.publish(routing, endpoints)

    def remove(self, service: str) -> None:
        """Stop routing ``service``: waiting requests get 503, new ones 404."""
        route = self.call(self.routes.pop, service, None)
        if route is not None:
            self.call(route.close)

    def outstanding(self, service: str) -> dict[str, int]:
        """Requests in flight per replica of ``service`` (a drained replica shows 0)."""

        def read() -> dict[str, int]:
            route = self.routes.get(service)
            return {} if route is None else {e.id: e.outstanding for e in route.endpoints.values()}

        return self.call(read)

    def ejections(self) -> dict[str, list[str]]:
        """Replicas ejected (refused or dropped a connection) since the last call, by service."""

        def take() -> dict[str, list[str]]:
            out = {name: r.ejections for name, r in self.routes.items() if r.ejections}
            for route in self.routes.values():
                route.ejections = []
            return out

        return self.call(take)

    def take_telemetry(self, *, wall_s: float | None = None) -> list[TelemetryWindow]:
        """Every service's window since the last call, stamped ``wall_s`` (default: the wall clock now)."""

        def take() -> list[TelemetryWindow]:
            now, wall = time.perf_counter(), time.time() if wall_s is None else wall_s
            return [
                route.stats.take(
                    name,
                    now_s=now,
                    wall_s=wall,
                    queued=len(route.waiters),
                    replica_outstanding={e.id: e.outstanding for e in route.endpoints.values()},
                )
                for name, route in self.routes.items()
            ]

        return self.call(take)

    def totals(self) -> dict[str, tuple[int, int, int, int]]:
        """(requests, errors, rejected, in flight) since start, by service (for ``/metrics``)."""
        return self.call(
            lambda: {
                n: (r.stats.requests_total, r.stats.errors_total, r.stats.rejected_total, r.stats.in_flight)
                for n, r in self.routes.items()
            }
        )

    def probe(
        self, targets: Sequence[tuple[str, str, int, str]], *, timeout_s: float = 1.0
    ) -> dict[str, bool]:
        """GET each (key, host, port, path) concurrently; True where it answered 200 within the timeout."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(_probe_all(targets, timeout_s), self.loop)
        return future.result(timeout=timeout_s + 10)

    # ------------------------------------------------------------------ requests (the loop's thread)
    def _handle(self, request: Request, client: ClientConnection) -> None:
        assert self.loop is not None
        self.loop.create_task(self._serve(request, client))

    async def _serve(self, request: Request, client: ClientConnection) -> None:
        service, target = split_target(request.path)
        route = None if service is None else self.routes.get(service)
        if route is None:
            self._reply_own(request, client, service)
            return
        started = time.perf_counter()  # uvloop's loop.time() ticks in whole milliseconds
        route.stats.begin(started)
        status = 502
        try:
            status = await self._proxy(route, request, target, client)
        except Exception:  # a bug must cost this request only, never the loop
            log.exception("gateway: request to service %s failed", service)
            self._error(client, request, 502, f"gateway error while proxying to service {service}")
        finally:
            done = time.perf_counter()
            route.stats.end(done, status, done - started)
            client.finished(keep_alive=request.keep_alive and status != _ABORTED)

    async def _proxy(self, route: Route, request: Request, target: bytes, client: ClientConnection) -> int:
        try:
            endpoint = await route.acquire(request, set())
        except (OverloadedError, UnavailableError) as exc:
            return self._error(client, request, exc.http_status, str(exc), retry_after=True)
        outcome = await self._attempt(route, endpoint, request, target, client)
        failed = f"replica {endpoint.id} {outcome.failure}"
        if outcome.status is None and outcome.failure != "timeout" and retryable(request, target):
            # It died before answering: once more on another replica with room now (no queueing twice).
            other = route.take(request, {endpoint.id})
            if other is not None:
                outcome = await self._attempt(route, other, request, target, client)
                failed += f", then replica {other.id} {outcome.failure}"
        if outcome.status is not None:
            return outcome.status
        if outcome.failure == "timeout":
            message = f"service {route.name}: {failed} after {route.routing.timeout_s:g} s"
            return self._error(client, request, 504, message)
        return self._error(
            client, request, 502, f"service {route.name}: {failed}; the request was not answered"
        )

    async def _attempt(
        self, route: Route, endpoint: Endpoint, request: Request, target: bytes, client: ClientConnection
    ) -> _Outcome:
        try:
            outcome = await self._forward(endpoint, request, target, client, route.routing.timeout_s)
        finally:
            route.release(endpoint)
        if outcome.status is None and outcome.failure != "timeout":
            route.eject(endpoint)  # refused or dropped the connection: no more traffic until probed again
        return outcome

    async def _forward(self, endpoint: Endpoint, request: Request, target: bytes, client: ClientConnection,
                       timeout_s: float) -> _Outcome:  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            conn = await endpoint.connection(loop)
        except OSError as exc:
            return _Outcome(None, f"refused the connection ({exc.strerror or exc})")
        future: asyncio.Future[_Outcome] = loop.create_future()
        exchange = _Exchange(future, client, request, conn, endpoint)
        conn.send(request.encode(target, endpoint.hostport), exchange, head_only=request.method == b"HEAD")
        timer = loop.call_later(timeout_s, exchange.timed_out)
        try:
            return await future
        finally:
            timer.cancel()

    def _error(self, client: ClientConnection, request: Request, status: int, message: str, *,
               retry_after: bool = False) -> int:  # fmt: skip
        extra = [(b"retry-after", b"1")] if retry_after and status in (429, 503) else None
        body = orjson.dumps({"error": message})
        client.write(simple_response(status, body, keep_alive=request.keep_alive, extra=extra))
        return status

    def _reply_own(self, request: Request, client: ClientConnection, service: str | None) -> None:
        if service is None and request.path in (b"/healthz", b"/"):
            body = orjson.dumps({"status": "ok", "services": sorted(self.routes)})
            client.write(simple_response(200, body, keep_alive=request.keep_alive))
        else:
            where = f"service {service!r}" if service else f"path {request.path.decode('latin-1')!r}"
            message = (
                f"no {where} behind this gateway; requests go to /services/<name>/... (skyline service list)"
            )
            client.write(
                simple_response(404, orjson.dumps({"error": message}), keep_alive=request.keep_alive)
            )
        client.finished(keep_alive=request.keep_alive)


def _bind(host: str, port: int) -> socket.socket:
    from skyline.errors import ConfigError

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"the gateway cannot listen on {host}:{port}: {exc.strerror}; pick another --gateway-port"
        ) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _probe_all(targets: Sequence[tuple[str, str, int, str]], timeout_s: float) -> dict[str, bool]:
    results = await asyncio.gather(*(_probe(host, port, path, timeout_s) for _, host, port, path in targets))
    return {key: ok for (key, *_), ok in zip(targets, results, strict=True)}


async def _probe(host: str, port: int, path: str, timeout_s: float) -> bool:
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n\r\n".encode())
            line = await reader.readline()
        parts = line.split()
        return len(parts) >= 2 and parts[1] == b"200"
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
