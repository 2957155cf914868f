"""An emulated network link on loopback: a TCP proxy that adds latency, limits bandwidth, loses and cuts.

``LinkProxy(target_port)`` listens on 127.0.0.1 (port 0) and forwards every connection to the target,
applying the current `LinkConditions` per direction:

- latency: each chunk is delivered ``latency_ms`` after it was read (one way; RTT is twice that);
- bandwidth: chunks are serialized at ``bandwidth_mbps`` per direction (a shared FIFO per connection);
- loss: TCP hides loss as delay, so a lost chunk is delivered one retransmission timeout (``rto_ms``) late;
- outage: new connections are refused and open ones are cut, until the outage ends.

Conditions can be changed while traffic flows (``proxy.conditions = ...``), which is how benchmarks and the
demo take the cloud away and bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from skyline.errors import ConfigError, UnavailableError

_CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConditions:
    """One direction's impairments (both directions get the same)."""

    latency_ms: float = 0.0
    bandwidth_mbps: float | None = None  # None: unlimited
    loss: float = 0.0  # probability that a chunk needs one retransmission
    rto_ms: float = 200.0
    outage: bool = False

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.rto_ms < 0:
            raise ConfigError(f"latency_ms and rto_ms must be >= 0, got {self.latency_ms}, {self.rto_ms}")
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise ConfigError(f"bandwidth_mbps must be positive or None, got {self.bandwidth_mbps}")
        if not 0.0 <= self.loss < 1.0:
            raise ConfigError(f"loss must be in [0, 1), got {self.loss}")

    def transmit_s(self, size_bytes: int) -> float:
        """Seconds to put ``size_bytes`` on the wire at this bandwidth."""
        return 0.0 if self.bandwidth_mbps is None else size_bytes * 8 / (self.bandwidth_mbps * 1e6)


class LinkProxy:
    """A TCP proxy on 127.0.0.1 in its own thread and event loop; use as a context manager."""

    def __init__(
        self,
        target_port: int,
        conditions: LinkConditions | None = None,
        *,
        target_host: str = "127.0.0.1",
        seed: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.conditions = conditions or LinkConditions()
        self.port = 0
        self.bytes_forwarded = 0
        self.connections_refused = 0
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LinkProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            future.result(timeout=10.0)
        except Exception as exc:
            raise UnavailableError(f"link proxy could not listen on 127.0.0.1: {exc}") from exc
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_outage(self, down: bool) -> None:
        """Take the link down (cut open connections, refuse new ones) or bring it back."""
        current = self.conditions
        self.conditions = LinkConditions(
            latency_ms=current.latency_ms,
            bandwidth_mbps=current.bandwidth_mbps,
            loss=current.loss,
            rto_ms=current.rto_ms,
            outage=down,
        )
        if down:
            self._loop.call_soon_threadsafe(self._cut_all)

    def _cut_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # A connection cancelled at shutdown ends quietly (asyncio would log the cancellation otherwise).
        with contextlib.suppress(asyncio.CancelledError):
            await self._forward(client_r, client_w)

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.conditions.outage:
            self.connections_refused += 1
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._open.update((client_w, server_w))
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        for writer in (client_w, server_w):
            self._open.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks, stamp each with its delivery time, deliver in order from a second task."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(queue, writer))
        wire_free_at = 0.0  # when the emulated wire finishes sending what is already queued
        try:
            while chunk := await reader.read(_CHUNK_BYTES):
                cond = self.conditions
                now = time.monotonic()
                wire_free_at = max(wire_free_at, now) + cond.transmit_s(len(chunk))
                delay = cond.latency_ms / 1e3
                if cond.loss and self._rng.random() < cond.loss:
                    delay += cond.rto_ms / 1e3
                queue.put_nowait((wire_free_at + delay, chunk))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)
        with contextlib.suppress(ConnectionError, OSError):
            await deliver

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.conditions.outage or writer.is_closing():
                writer.transport.abort()
                return
            writer.write(chunk)
            self.bytes_forwarded += len(chunk)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            self._cut_all()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
        self._loop.close()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
