"""The gateway over real sockets: routing, least outstanding, affinity, streaming, retries, queueing, draining.

Replicas here are small ASGI apps served by uvicorn on loopback (each says who it is, can hold a request
until released, stream server-sent events, or sleep); the control plane's own tests run `skyline serve`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from skyline.cluster.gateway import Gateway, retryable, split_target
from skyline.cluster.gateway_http import Request
from skyline.cluster.gateway_routing import EndpointInfo
from skyline.cluster.service_spec import RoutingSpec
from skyline.core.net import free_port
from skyline.security.tokens import TokenAuthority
from skyline.serving.server import BackgroundServer
from skyline.testing.cluster import wait_until

pytestmark = pytest.mark.integration
INFER = "/v2/models/m/infer"


class Replica:
    """An ASGI replica: answers its name; ``/hold`` waits for `release`; ``/sse`` streams 3 events."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = threading.Event()
        self.seen: list[str] = []

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

        self.server = BackgroundServer(asgi)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(scope["path"])
        if scope["path"] == "/hold":
            await asyncio.to_thread(self.gate.wait, 10)
        if scope["path"] == "/sleep":
            await asyncio.sleep(1.0)
        if scope["path"] == "/sse":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for i in range(3):
                await send(
                    {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
                )
                await asyncio.sleep(0.3)
            await send({"type": "http.response.body", "body": b""})
            return
        payload = orjson.dumps({"replica": self.name, "path": scope["path"], "query": scope["query_string"].decode(),
                                "bytes": len(body)})  # fmt: skip
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def info(self, *, draining: bool = False) -> EndpointInfo:
        return EndpointInfo(id=self.name, host="127.0.0.1", port=self.server.port, draining=draining)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[Replica]]:
    made = [Replica(name) for name in ("a", "b", "c")]
    for replica in made:
        replica.server.start()
    yield made
    for replica in made:
        replica.gate.set()
        replica.server.stop()


@pytest.fixture
def replicas(servers: list[Replica]) -> Iterator[list[Replica]]:
    for replica in servers:
        replica.gate.clear()
        replica.seen.clear()
    yield servers
    for replica in servers:
        replica.gate.set()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    demands: list[str] = []
    with Gateway(on_demand=demands.append) as gw:
        gw.demands = demands  # type: ignore[attr-defined]
        yield gw


def _url(gw: Gateway, path: str, service: str = "svc") -> str:
    return f"{gw.url}/services/{service}{path}"


def test_targets_and_which_requests_may_be_retried() -> None:
    assert split_target(b"/services/mlp/v2/models/mlp/infer?x=1") == ("mlp", b"/v2/models/mlp/infer?x=1")
    assert split_target(b"/services/mlp") == ("mlp", b"/")
    assert split_target(b"/services/mlp?x=1") == ("mlp", b"/?x=1")
    assert split_target(b"/v2/health") == (None, b"/v2/health")

    def request(method: bytes, headers: list[tuple[bytes, bytes]] = ()) -> Request:  # type: ignore[assignment]
        return Request(method=method, path=b"", headers=list(headers), body=b"", keep_alive=True, http11=True)

    assert retryable(request(b"GET"), b"/anything")
    assert retryable(request(b"POST"), b"/v2/models/m/versions/2/infer")
    assert retryable(request(b"POST"), b"/v1/chat/completions")
    assert not retryable(request(b"POST"), b"/v2/repository/models/m/load")
    assert retryable(request(b"POST", [(b"idempotency-key", b"k1")]), b"/v2/repository/models/m/load")


def test_routes_by_prefix_strips_it_and_answers_unknown_services(
    gateway: Gateway, replicas: list[Replica]
) -> None:
    gateway.publish("svc", RoutingSpec(), [replicas[0].info()])
    with httpx.Client() as client:
        answer = client.post(_url(gateway, INFER + "?v=1"), content=b"x" * 1000)
        assert answer.status_code == 200
        assert answer.json() == {"replica": "a", "path": INFER, "query": "v=1", "bytes": 1000}
        missing = client.get(_url(gateway, "/", service="nope"))
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        assert client.get(f"{gateway.url}/healthz").json() == {"status": "ok", "services": ["svc"]}
        for _ in range(20):  # keep-alive on both sides: many requests, one client connection
            assert client.get(_url(gateway, "/x")).status_code == 200


def test_least_outstanding_requests(gateway: Gateway, replicas: list[Replica]) -> None:
    a, b, _ = replicas
    gateway.publish("svc", RoutingSpec(), [a.info()])
    with ThreadPoolExecutor(1) as pool, httpx.Client() as client:
        held = pool.submit(httpx.get, _url(gateway, "/hold"), timeout=10)
        deadline = time.monotonic() + 5
        while gateway.outstanding("svc").get("a") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        gateway.publish("svc", RoutingSpec(), [a.info(), b.info()])
        names = [client.get(_url(gateway, "/quick")).json()["replica"] for _ in range(6)]
        assert names == ["b"] * 6  # a holds one request, b none each time
        a.gate.set()
        assert held.result().json()["replica"] == "a"


def test_affinity_keeps_a_key_on_one_replica(gateway: Gateway, replicas: list[Replica]) -> None:
    gateway.publish("svc", RoutingSpec(affinity_header="X-Session"), [r.info() for r in replicas])
    with httpx.Client() as client:
        by_key = {
            key: {
                client.get(_url(gateway, "/"), headers={"X-Session": key}).json()["replica"] for _ in range(5)
            }
            for key in (f"user-{i}" for i in range(12))
        }
    assert all(len(names) == 1 for names in by_key.values())  # each key always on the same replica
    assert len({next(iter(n)) for n in by_key.values()}) > 1  # and keys spread over replicas


def test_server_sent_events_stream_through(gateway: Gateway, replicas: list[Replica]) -> None:
    gateway.publish("svc", RoutingSpec(), [replicas[0].info()])
    arrivals = []
    started = time.monotonic()
    with httpx.stream("GET", _url(gateway, "/sse"), timeout=10) as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line:
                arrivals.append((line, time.monotonic() - started))
    assert [line for line, _ in arrivals] == ["data: 0", "data: 1", "data: 2"]
    # Streamed, not buffered: the replica sends an event every 0.3 s and they arrive as spread out.
    assert arrivals[2][1] - arrivals[0][1] > 0.4


def test_a_dead_replica_is_ejected_and_an_idempotent_request_retried(
    gateway: Gateway, replicas: list[Replica]
) -> None:
    dead = EndpointInfo(id="dead", host="127.0.0.1", port=free_port())
    gateway.publish("svc", RoutingSpec(), [dead, replicas[1].info()])
    with httpx.Client() as client:
        statuses = Counter(client.post(_url(gateway, INFER), content=b"{}").status_code for _ in range(4))
    assert statuses == {200: 4}
    assert gateway.ejections() == {"svc": ["dead"]}
    # The controller unpublishes an ejected replica; published again (after a good probe) it gets traffic.
    gateway.publish("svc", RoutingSpec(), [replicas[1].info()])
    gateway.publish("svc", RoutingSpec(), [dead])
    refused = httpx.post(_url(gateway, "/v2/repository/models/m/load"))
    assert refused.status_code == 502 and "dead" in refused.json()["error"]


class HeadThenDies:
    """A replica that reads a request, writes its response head on its own, and dies before the body:
    what a SIGKILLed process can leave between its two writes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                self.requests += 1
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n"
                )
                time.sleep(0.05)  # the head reaches the gateway in a read of its own

    def info(self) -> EndpointInfo:
        return EndpointInfo(id="head-then-dies", host="127.0.0.1", port=self.port)


def test_a_replica_that_dies_between_its_head_and_its_body_leaves_the_request_retryable(
    gateway: Gateway, replicas: list[Replica]
) -> None:
    broken = HeadThenDies()
    try:
        gateway.publish("svc", RoutingSpec(), [broken.info(), replicas[1].info()])
        with httpx.Client() as client:
            answers = [client.post(_url(gateway, INFER), content=b"{}") for _ in range(4)]
        assert broken.requests >= 1
        assert [a.status_code for a in answers] == [200] * 4
        assert {a.json()["replica"] for a in answers} == {"b"}
    finally:
        broken.listener.close()


def _queued(gw: Gateway, count: int) -> None:
    wait_until(lambda: gw.call(lambda: len(gw.routes["svc"].waiters)) == count, timeout_s=10, poll_s=0.01)


def test_queue_then_429_and_503_and_scale_from_zero(gateway: Gateway, replicas: list[Replica]) -> None:
    gateway.publish("svc", RoutingSpec(queue_limit=2, hold_s=2.0), [])
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(httpx.get, _url(gateway, "/"), timeout=10) for _ in range(2)]
        _queued(gateway, 2)
        full = httpx.get(_url(gateway, "/"))
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert [f.result().status_code for f in waiting] == [503, 503]
    assert gateway.demands[:1] == ["svc"]  # type: ignore[attr-defined]
    # From zero: requests wait for the first replica and are answered once it is published.
    gateway.publish("svc", RoutingSpec(queue_limit=10, hold_s=5), [])
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(httpx.get, _url(gateway, "/"), timeout=10) for _ in range(3)]
        _queued(gateway, 3)
        gateway.publish("svc", RoutingSpec(queue_limit=10, hold_s=5), [replicas[2].info()])
        assert [f.result().json()["replica"] for f in waiting] == ["c", "c", "c"]


def test_max_concurrency_queues_and_drain_takes_no_new_requests(
    gateway: Gateway, replicas: list[Replica]
) -> None:
    a, b, _ = replicas
    routing = RoutingSpec(max_concurrency=1, hold_s=5)
    gateway.publish("svc", routing, [a.info()])
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.get, _url(gateway, "/hold"), timeout=10)
        wait_until(lambda: a.seen == ["/hold"], timeout_s=10, poll_s=0.01)
        second = pool.submit(httpx.get, _url(gateway, "/after"), timeout=10)
        _queued(gateway, 1)
        assert a.seen == ["/hold"]  # the second waits at the gateway, not at the replica
        gateway.publish("svc", routing, [a.info(draining=True), b.info()])
        assert second.result().json()["replica"] == "b"
        assert gateway.outstanding("svc") == {"a": 1, "b": 0}  # a finishes what it has ...
        a.gate.set()
        assert first.result().json()["replica"] == "a"
    assert gateway.outstanding("svc")["a"] == 0  # ... and then can be stopped


def test_timeout_is_504_and_telemetry_counts_everything(gateway: Gateway, replicas: list[Replica]) -> None:
    gateway.publish("svc", RoutingSpec(timeout_s=0.3), [replicas[0].info()], slo_ms=200)
    gateway.take_telemetry()
    with httpx.Client() as client:
        slow = client.get(_url(gateway, "/sleep"))
        ok = [client.get(_url(gateway, "/")).status_code for _ in range(9)]
    assert slow.status_code == 504 and ok == [200] * 9
    (window,) = gateway.take_telemetry(wall_s=123.0)
    assert (window.service, window.at_s, window.requests, window.errors, window.within_slo) == (
        "svc",
        123.0,
        10,
        1,
        9,
    )
    assert window.p99_ms is not None and window.p99_ms > 250 and window.peak_concurrency == 1
    assert gateway.totals() == {"svc": (10, 1, 0, 0)}


def test_malformed_requests_get_400_and_the_gateway_goes_on(
    gateway: Gateway, replicas: list[Replica]
) -> None:
    gateway.publish("svc", RoutingSpec(), [replicas[0].info()])
    with socket.create_connection(("127.0.0.1", gateway.port)) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert raw.recv(1000).startswith(b"HTTP/1.1 400")
    assert httpx.get(_url(gateway, "/")).status_code == 200


def test_a_service_that_requires_tokens(replicas: list[Replica], tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    tokens = {
        "invoker": authority.issue("app", "invoker"),
        "scoped-elsewhere": authority.issue("other", "invoker", models=["other-model"]),
        "viewer": authority.issue("watcher", "viewer"),
    }
    with Gateway(authority=authority) as gw:
        routing = RoutingSpec(auth=True, rate_limit_per_s=2.0)
        gw.publish("svc", routing, [replicas[0].info()], model="mlp")
        with httpx.Client() as client:

            def call(token: str | None) -> httpx.Response:
                headers = {} if token is None else {"authorization": f"Bearer {token}"}
                return client.post(_url(gw, INFER), content=b"{}", headers=headers)

            missing = call(None)
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
            assert call("sky_0123456789ab_wrong").status_code == 401
            assert call(tokens["viewer"]).status_code == 403
            assert call(tokens["scoped-elsewhere"]).status_code == 403
            answers = [call(tokens["invoker"]) for _ in range(6)]
        # A burst of 2 s worth (4), then 429 with Retry-After; the replica saw only the admitted ones.
        assert [a.status_code for a in answers[:4]] == [200] * 4
        assert answers[-1].status_code == 429 and int(answers[-1].headers["retry-after"]) >= 1
        assert replicas[0].seen.count(INFER) == sum(a.status_code == 200 for a in answers)
