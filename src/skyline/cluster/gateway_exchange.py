"""One request through the gateway: which service and path it names, whether it may be sent twice, and
`Exchange`, one attempt of it on one replica (the response streamed back to the client as it arrives).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from skyline.cluster.gateway_http import ClientConnection, Headers, Request, Sink, UpstreamConnection
from skyline.cluster.gateway_routing import Endpoint, Route

PREFIX = b"/services/"
_INFERENCE = re.compile(
    rb"^/(v2/models/[^/?]+(/versions/[^/?]+)?/infer|v1/(chat/completions|completions|embeddings))(\?|$)"
)
_SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
ABORTED = 502  # counted as an error: the client saw a cut response


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
class Outcome:
    status: int | None = None  # the status the client got; None: failed before any response byte
    failure: str = ""


@dataclass(slots=True)
class Call:
    """One client request on its way: where it goes, since when, and the attempts that failed."""

    route: Route
    request: Request
    target: bytes
    client: ClientConnection
    started: float
    failures: list[str]


class Exchange(Sink):
    """One attempt of one request: forwards the replica's response to the client as it arrives, then
    calls ``done`` once with the outcome (answered, or failed before or during the response)."""

    def __init__(self, call: Call, conn: UpstreamConnection, endpoint: Endpoint,
                 done: Callable[[Outcome], None]) -> None:  # fmt: skip
        self.client, self.request = call.client, call.request
        self.conn, self.endpoint, self.done = conn, endpoint, done
        self.status: int | None = None
        self.held: tuple[int, Headers, bool] | None = None  # the replica's head, not yet sent on
        self.timer: asyncio.TimerHandle | None = None
        self.over = False

    def _finish(self, outcome: Outcome) -> None:
        if not self.over:
            self.over = True
            if self.timer is not None:
                self.timer.cancel()
            self.done(outcome)

    def response_head(self, status: int, headers: Headers, framed: bool) -> None:
        # Held until the body's first bytes or the end: a replica that writes its head on its own and dies
        # before its body then leaves nothing at the client, and the request may still go to another one.
        self.held = (status, headers, framed)

    def _forward_head(self) -> None:
        if self.held is None:
            return
        status, headers, framed = self.held
        self.held, self.status = None, status
        keep_alive = self.request.keep_alive and (framed or self.request.http11)
        self.client.on_drain = lambda writable: self.conn.pause(not writable)
        self.client.respond_head(
            status, headers, chunk=not framed and self.request.http11, keep_alive=keep_alive
        )

    def response_body(self, data: bytes) -> None:
        self._forward_head()
        self.client.respond_body(data)

    def response_end(self, reusable: bool) -> None:
        self._forward_head()
        self.client.respond_end()
        if reusable:
            self.endpoint.give_back(self.conn)
        else:
            self.conn.close()
        self._finish(Outcome(self.status))

    def flush(self) -> None:
        self.client.flush()

    def upstream_failed(self, exc: BaseException | None) -> None:
        if self.over:
            return
        if self.status is not None:  # part of the response was forwarded: the client must see it cut
            self.client.abort()
            self._finish(Outcome(ABORTED, "connection lost mid-response"))
        else:
            self._finish(Outcome(None, f"connection lost ({exc or 'closed'})"))

    def timed_out(self) -> None:
        if self.over:
            return
        self.conn.close()
        if self.status is not None:
            self.client.abort()
            self._finish(Outcome(ABORTED, "timed out mid-response"))
        else:
            self._finish(Outcome(None, "timeout"))
