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
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import orjson

from skyline.cluster.gateway_exchange import ABORTED, Call, Exchange, Outcome, retryable, split_target
from skyline.cluster.gateway_http import (
    ClientConnection,
    Request,
    UpstreamConnection,
    simple_response,
)
from skyline.cluster.gateway_routing import Endpoint, EndpointInfo, Route
from skyline.cluster.service_spec import RoutingSpec
from skyline.cluster.service_telemetry import ServiceStats, TelemetryWindow
from skyline.errors import AuthError, OverloadedError, SkylineError, UnavailableError
from skyline.security.http import RateLimiter
from skyline.security.tls import server_ssl_context
from skyline.security.tokens import TokenAuthority
from skyline.serving.fastpath import Guard
from skyline.serving.server import bind_socket

log = logging.getLogger("skyline.cluster.gateway")
T = TypeVar("T")


class _NoTokens:
    """Stands in for a missing token authority: a service that requires tokens then admits none."""

    def verify(self, token: str) -> Any:
        raise AuthError("this gateway has no token authority: no token can be checked")


_NO_TOKENS: Any = _NoTokens()
_CONSUMED = frozenset({b"authorization"})  # what a service with ``routing.auth`` does not pass on


class Gateway:
    """The services' HTTP entry point; ``on_demand(service)`` is called when a request waits for room."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_demand: Callable[[str], None] | None = None,
        authority: TokenAuthority | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.host = host
        self.authority = authority  # checks the tokens of services that require them
        # HTTPS only when the control plane's API is (the same pair): tokens never cross the wire in clear.
        self._ssl = None if tls is None else server_ssl_context(*tls)
        self._sock = bind_socket(host, port, flag="--gateway-port")
        self._sock.listen(1024)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"{'https' if tls is not None else 'http'}://{host}:{self.port}"
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
        self._server = loop.run_until_complete(
            loop.create_server(self._protocol, sock=self._sock, ssl=self._ssl)
        )
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
                *, slo_ms: float | None = None, model: str | None = None) -> None:  # fmt: skip
        """Set ``service``'s replicas (ready ones; ``draining`` ones finish what they have); ``model`` is
        what a token must be allowed to invoke when the service requires tokens (default: its name)."""
        self.call(self._publish, service, routing, tuple(endpoints), slo_ms, model or service)

    def _publish(self, service: str, routing: RoutingSpec, endpoints: tuple[EndpointInfo, ...],
                 slo_ms: float | None, model: str) -> None:  # fmt: skip
        route = self.routes.get(service)
        if route is None:
            stats = ServiceStats(time.perf_counter(), slo_ms=slo_ms)
            route = self.routes[service] = Route(service, routing, stats, self.on_demand)
        route.stats.slo_ms, route.model = slo_ms, model
        key = (routing.auth, routing.rate_limit_per_s)
        if key != route.guard_key:  # a limiter keeps its buckets while the settings stay
            rate = routing.rate_limit_per_s
            limiter = None if rate is None else RateLimiter.per_token(rate)
            route.guard = Guard(self.authority or _NO_TOKENS, limiter) if routing.auth else None
            route.guard_key = key
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
    # The common case (a replica with room and an idle kept-alive connection to it) is handled with
    # callbacks alone; a request that must wait for room or for a new connection takes a coroutine.
    # A task per request cost about a fifth of the gateway's CPU per request.
    def _handle(self, request: Request, client: ClientConnection) -> None:
        service, target = split_target(request.path)
        route = None if service is None else self.routes.get(service)
        if route is None:
            self._reply_own(request, client, service)
            return
        call = Call(route, request, target, client, time.perf_counter(), [])
        route.stats.begin(call.started)
        if route.guard is not None and not self._admitted(call):
            return
        endpoint = None if route.waiters else route.take(request, set())
        conn = None if endpoint is None else endpoint.idle()
        if endpoint is not None and conn is not None:
            self._send(call, endpoint, conn)
        else:
            if endpoint is not None:
                route.release(endpoint)
            assert self.loop is not None
            self.loop.create_task(self._slow(call, exclude=set()))

    async def _slow(self, call: Call, *, exclude: set[str]) -> None:
        """Wait for a replica with room (first attempt only) and connect to it, then send."""
        route = call.route
        try:
            if exclude:  # a retry: another replica with room now, never a second wait in the queue
                endpoint = route.take(call.request, exclude)
                if endpoint is None:
                    self._end(call, Outcome(None, "failed"))
                    return
            else:
                endpoint = await route.acquire(call.request, exclude)
        except (OverloadedError, UnavailableError) as exc:
            status = self._error(call.client, call.request, exc.http_status, str(exc), retry_after=True)
            self._end(call, Outcome(status))
            return
        try:
            assert self.loop is not None
            conn = await endpoint.connection(self.loop)
        except OSError as exc:
            self._after(call, endpoint, Outcome(None, f"refused the connection ({exc.strerror or exc})"))
            return
        self._send(call, endpoint, conn)

    def _send(self, call: Call, endpoint: Endpoint, conn: UpstreamConnection) -> None:
        exchange = Exchange(call, conn, endpoint, lambda outcome: self._after(call, endpoint, outcome))
        # A control-plane token the gateway checked stays here: a replica runs its deployer's code,
        # which must never hold its callers' tokens (an admin's would make that operator an admin).
        drop = _CONSUMED if call.route.guard is not None else frozenset()
        conn.send(
            call.request.encode(call.target, endpoint.hostport, drop=drop),
            exchange,
            head_only=call.request.method == b"HEAD",
        )
        assert self.loop is not None
        exchange.timer = self.loop.call_later(call.route.routing.timeout_s, exchange.timed_out)

    def _after(self, call: Call, endpoint: Endpoint, outcome: Outcome) -> None:
        """An attempt ended: done, or (died before answering) once more elsewhere if that is safe."""
        route = call.route
        route.release(endpoint)
        if outcome.status is None and outcome.failure != "timeout":
            route.eject(endpoint)  # refused or dropped the connection: no traffic until probed again
            call.failures.append(f"replica {endpoint.id} {outcome.failure}")
            if len(call.failures) == 1 and retryable(call.request, call.target):
                assert self.loop is not None
                self.loop.create_task(self._slow(call, exclude={endpoint.id}))
                return
        elif outcome.status is None:
            call.failures.append(f"replica {endpoint.id} timed out after {route.routing.timeout_s:g} s")
        self._end(call, outcome)

    def _admitted(self, call: Call) -> bool:
        """The token check of a service that requires one; False (answered 401/403/429) when refused."""
        header = call.request.header(b"authorization")
        try:
            assert call.route.guard is not None
            call.route.guard(
                None if header is None else header.decode("latin-1"), "invoke", "models", call.route.model
            )
        except SkylineError as exc:
            extra = [(b"www-authenticate", b"Bearer")] if exc.http_status == 401 else None
            if isinstance(exc, OverloadedError):
                extra = [(b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode())]
            body = orjson.dumps({"error": str(exc)})
            call.client.send(
                simple_response(exc.http_status, body, keep_alive=call.request.keep_alive, extra=extra)
            )
            self._end(call, Outcome(exc.http_status))
            return False
        return True

    def _end(self, call: Call, outcome: Outcome) -> None:
        status = outcome.status
        if status is None:  # never answered: say why
            failed = "; ".join(call.failures) or "no replica could take it"
            status = 504 if outcome.failure == "timeout" else 502
            message = f"service {call.route.name}: {failed}; the request was not answered"
            self._error(call.client, call.request, status, message)
        done = time.perf_counter()
        call.route.stats.end(done, status, done - call.started)
        call.client.finished(keep_alive=call.request.keep_alive and status != ABORTED)

    def _error(self, client: ClientConnection, request: Request, status: int, message: str, *,
               retry_after: bool = False) -> int:  # fmt: skip
        extra = [(b"retry-after", b"1")] if retry_after and status in (429, 503) else None
        body = orjson.dumps({"error": message})
        client.send(simple_response(status, body, keep_alive=request.keep_alive, extra=extra))
        return status

    def _reply_own(self, request: Request, client: ClientConnection, service: str | None) -> None:
        if service is None and request.path in (b"/healthz", b"/"):
            body = orjson.dumps({"status": "ok", "services": sorted(self.routes)})
            client.send(simple_response(200, body, keep_alive=request.keep_alive))
        else:
            where = f"service {service!r}" if service else f"path {request.path.decode('latin-1')!r}"
            message = (
                f"no {where} behind this gateway; requests go to /services/<name>/... (skyline service list)"
            )
            client.send(simple_response(404, orjson.dumps({"error": message}), keep_alive=request.keep_alive))
        client.finished(keep_alive=request.keep_alive)


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
