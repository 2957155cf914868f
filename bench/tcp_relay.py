"""The least a user-space proxy can do, for the gateway benchmark: a TCP relay that parses nothing.

Each accepted connection gets its own connection to the target and bytes are copied both ways as they
arrive (uvloop, asyncio protocols, no HTTP at all): no routing per request, no retries, no telemetry. What
it costs over a direct connection is the extra hop itself (two more socket reads and writes per request
and loopback TCP) plus the least Python can add; a proxy that reads HTTP cannot cost less.

    python bench/tcp_relay.py --port LISTEN --to 127.0.0.1:TARGET
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop


class _Half(asyncio.Protocol):
    """One side of a relayed connection; what it reads, the other side's transport writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.pending: list[bytes] = []  # read before the peer connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def _serve(port: int, host: str, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    def accepted() -> _Half:
        client = _Half()

        async def connect() -> None:
            try:
                _, upstream = await loop.create_connection(_Half, host, target_port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            if client.transport is None:  # the client left while this connected
                upstream.transport.close()  # type: ignore[union-attr]
                return
            client.peer, upstream.peer = upstream, client
            for data in client.pending:
                upstream.transport.write(data)  # type: ignore[union-attr]
            client.pending.clear()

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    server = await loop.create_server(accepted, "127.0.0.1", port)
    print("relay ready", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True, help="HOST:PORT")
    args = parser.parse_args()
    host, target = args.to.rsplit(":", 1)
    uvloop.run(_serve(args.port, host, int(target)))


if __name__ == "__main__":
    main()
