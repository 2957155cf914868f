"""The gateway's HTTP/1.1 wire: a client-facing connection and a replica-facing one, on asyncio protocols.

httptools (llhttp, the parser uvicorn uses) frames both directions. A request body is read whole before it
is forwarded (so that a request can be sent again to another replica); a response is forwarded as it
arrives, chunk by chunk, so server-sent events (an LLM's token stream) pass straight through. Both sides
keep connections alive; `UpstreamConnection` returns itself to its replica's pool after each response.
Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Framing and routing headers the gateway writes itself.
_NOT_FORWARDED = HOP_BY_HOP | {b"content-length", b"host", b"expect"}
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Content Too Large"}
_REASONS |= {
    429: b"Too Many Requests",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Request:
    """One client request, read whole. ``path`` is the target as received (the service prefix included)."""

    method: bytes
    path: bytes
    headers: Headers  # names lower-cased, hop-by-hop ones removed
    body: bytes
    keep_alive: bool
    http11: bool

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def encode(self, target: bytes, host: bytes, *, drop: frozenset[bytes] = frozenset()) -> bytes:
        """The request as sent to a replica: ``target`` (its path there), framed by a content length,
        without the headers named in ``drop``."""
        head = [self.method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\ncontent-length: "]
        head += [str(len(self.body)).encode(), b"\r\n"]
        for key, value in self.headers:
            if key not in _NOT_FORWARDED and key not in drop:
                head += [key, b": ", value, b"\r\n"]
        head += [b"\r\n", self.body]
        return b"".join(head)


def simple_response(status: int, body: bytes, *, keep_alive: bool, extra: Headers | None = None) -> bytes:
    """A complete JSON response the gateway answers itself (errors, its own health)."""
    head = [b"HTTP/1.1 ", str(status).encode(), b" ", _REASONS.get(status, b"Error"), b"\r\n"]
    head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
    for key, value in extra or ():
        head += [key, b": ", value, b"\r\n"]
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head += [b"\r\n", body]
    return b"".join(head)


class ClientConnection(asyncio.Protocol):
    """A client's connection: parses requests, hands each to ``handler`` in turn, writes its response.

    Requests on one connection are answered in order (HTTP/1.1 pipelining): reading pauses while one is
    being handled. The handler calls `respond_*` to write, then `finished`.
    """

    def __init__(
        self,
        handler: Callable[[Request, ClientConnection], None],
        *,
        on_close: Callable[[ClientConnection], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False
        self.chunked = False
        self.on_drain: Callable[[bool], None] | None = None  # upstream flow control while writing is paused
        self._queue: deque[Request] = deque()
        self._out: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._size = 0

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._queue.clear()
        if self.on_close is not None:
            self.on_close(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, b'{"error": "protocol upgrades (websocket, h2c) are not supported"}')
        except httptools.HttpParserError as exc:
            self._refuse(400, b'{"error": "malformed HTTP request: %s"}' % str(exc).encode()[:200])
        except _TooLargeError as exc:
            self._refuse(413, str(exc).encode())

    def pause_writing(self) -> None:
        if self.on_drain is not None:
            self.on_drain(False)

    def resume_writing(self) -> None:
        if self.on_drain is not None:
            self.on_drain(True)

    # ------------------------------------------------------------------ httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value)
        if self._size > MAX_HEADER_BYTES:
            raise _TooLargeError(b'{"error": "request headers exceed 64 KiB"}')
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if (b"expect", b"100-continue") in self._headers:  # the body is wanted: say so at once
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            raise _TooLargeError(b'{"error": "request body exceeds 64 MiB"}')
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = Request(
            method=self.parser.get_method(),
            path=self._url,
            headers=[(k, v) for k, v in self._headers if k not in HOP_BY_HOP],
            body=b"".join(self._body),
            keep_alive=self.parser.should_keep_alive(),
            http11=self.parser.get_http_version() == "1.1",
        )
        self._reset()
        self._queue.append(request)
        if self.busy:
            assert self.transport is not None
            self.transport.pause_reading()
        else:
            self._next()

    # ------------------------------------------------------------------ answering
    def _next(self) -> None:
        if self._queue and self.transport is not None:
            self.busy = True
            self.handler(self._queue.popleft(), self)

    def finished(self, *, keep_alive: bool) -> None:
        """The current response is complete: go on with the next request, or close."""
        self.busy = False
        self.on_drain = None
        self.flush()
        if self.transport is None:
            return
        if not keep_alive:
            self.transport.close()
        elif self._queue:
            self._next()
        else:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Queue ``data``; `flush` sends what is queued in one system call (a response's head and body
        usually arrive in one read from the replica and leave in one write)."""
        self._out.append(data)

    def flush(self) -> None:
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
        self._out.clear()

    def send(self, data: bytes) -> None:
        """Write and flush (the gateway's own answers)."""
        self.write(data)
        self.flush()

    def respond_head(self, status: int, headers: Headers, *, chunk: bool, keep_alive: bool) -> None:
        """Status line and headers; ``chunk``: the body's length is unknown, send it in chunks (HTTP/1.1)."""
        self.chunked = chunk
        head = [b"HTTP/1.1 ", str(status).encode(), b" ", _REASONS.get(status, b""), b"\r\n"]
        for key, value in headers:
            head += [key, b": ", value, b"\r\n"]
        if self.chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        self.write(b"".join(head))

    def respond_body(self, data: bytes) -> None:
        if self.chunked:
            self.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.write(data)

    def respond_end(self) -> None:
        if self.chunked:
            self.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Cut the connection mid-response (the replica died after answering part of it)."""
        if self.transport is not None:
            self.transport.abort()

    def _refuse(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.busy:
            self.transport.write(simple_response(status, body, keep_alive=False))
        if self.transport is not None:
            self.transport.close()


class _TooLargeError(Exception):
    """A request over the header or body limit (answered 413, connection closed)."""


class Sink:
    """Where an upstream response goes (implemented by the gateway's exchange)."""

    def response_head(self, status: int, headers: Headers, framed: bool) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_end(self, reusable: bool) -> None: ...

    def upstream_failed(self, exc: BaseException | None) -> None: ...

    def flush(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """A kept-alive connection to one replica, carrying one request at a time to a `Sink`."""

    def __init__(self, on_lost: Callable[[UpstreamConnection], None]) -> None:
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self._head_only = False
        self._headers: Headers = []
        self._framed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        sink, self.sink = self.sink, None
        self.on_lost(self)
        if sink is not None:
            sink.upstream_failed(exc)

    def send(self, data: bytes, sink: Sink, *, head_only: bool) -> None:
        self.sink, self._head_only = sink, head_only
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.sink = None
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.sink = None
            if sink is not None:
                sink.upstream_failed(exc)
            self.close()
        if sink is not None:
            sink.flush()  # what this read brought goes to the client in one write

    def on_message_begin(self) -> None:
        self._headers, self._framed = [], False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._framed = True
        elif name in HOP_BY_HOP:
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        no_body = self._head_only or status in (204, 304) or 100 <= status < 200
        if self.sink is not None:
            self.sink.response_head(status, self._headers, self._framed or no_body)
        if self._head_only:  # llhttp would wait for the announced body: end here, never reuse
            sink, self.sink = self.sink, None
            if sink is not None:
                sink.response_end(False)
            self.close()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_end(self.parser.should_keep_alive() and self.transport is not None)

    def pause(self, paused: bool) -> None:
        """Flow control from the client side: stop reading while the client cannot keep up."""
        if self.transport is not None:
            (self.transport.pause_reading if paused else self.transport.resume_reading)()
