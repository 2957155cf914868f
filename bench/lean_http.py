"""A lean HTTP/1.1 keep-alive client for load generators.

Why not httpx: on this 2-core machine the load generator shares the cores with the server it measures,
and httpx spends ~1-3 ms of CPU per request (measured with the control-plane benchmark), more than the
server does. This client writes one pre-encoded request and reads one ``Content-Length`` response per
call on a persistent connection: tens of microseconds. It speaks only what the benchmarks need (no
chunked bodies, no TLS, no redirects); a server that closes the connection makes the call raise
``ConnectionError`` and the next call reconnects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson


class LeanConnection:
    """One keep-alive connection to ``host:port``; requests on it are sequential."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """Send one request (``body`` as JSON); return ``(status, parsed JSON body or None)``."""
        payload = b"" if body is None else orjson.dumps(body)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed}{extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            self._writer.write(head.encode() + b"\r\n" + payload)
            status_line = await self._reader.readuntil(b"\r\n")
            length = 0
            while (line := await self._reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            data = await self._reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise ConnectionError(f"{method} {path}: {exc}") from exc
        return int(status_line.split(b" ", 2)[1]), orjson.loads(data) if data else None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
