"""A load client for inference servers: closed loop (C workers) or open loop (Poisson arrivals at a rate).

Every worker owns one keep-alive HTTP/1.1 connection, written over raw asyncio streams: a shared client
pool (httpx) collapsed to a quarter of the throughput here, and this client must run on the same cores
as the server, so it spends as little CPU per request as it can. In open loop a request's latency counts
from the moment it was due, not from when a connection was free (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from skyline.errors import ConfigError, UnavailableError


class HttpConnection:
    """One keep-alive HTTP/1.1 connection (TLS for https:// URLs, verified with ``ssl_context``, default the
    system CAs); answers (status, body). Reconnects after the peer closes."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"URL {url!r} must look like http://HOST:PORT or https://HOST:PORT")
        self.host, self.port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            from skyline.security.tls import client_ssl_context

            # Always verified (certificate and host name): the system CAs unless a CA is given.
            self._ssl = ssl_context if ssl_context is not None else client_ssl_context()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl
                )
            except OSError as exc:  # refused, unreachable, or a certificate that does not verify
                raise UnavailableError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        assert self._reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        self._writer.write(head.encode() + body)
        try:
            status, length, close = self._parse_head(await self._reader.readuntil(b"\r\n\r\n"))
            payload = await self._read_chunked() if length < 0 else await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise UnavailableError(f"connection to {self.host}:{self.port} broke: {exc!r}") from exc
        if close:
            await self.close()
        return status, payload

    @staticmethod
    def _parse_head(head: bytes) -> tuple[int, int, bool]:
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        close = fields.get("connection", "").lower() == "close"
        if fields.get("transfer-encoding", "").lower() == "chunked":
            return status, -1, close
        return status, int(fields.get("content-length", "0")), close

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self._reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load run measured; latencies in milliseconds, CPU in seconds of this client process."""

    throughput_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int
    batch_size_mean: float | None
    requests: int
    duration_s: float
    concurrency: int
    rate_per_s: float | None
    client_cpu_s: float
    statuses: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _closed_worker(
    conn: HttpConnection, path: str, body: bytes, headers: dict[str, str], stop_at: float, log: list[Any]
) -> None:
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            status, _ = await conn.request("POST", path, body, headers)
        except UnavailableError:
            status = 599
        log.append((time.perf_counter() - started, status))
    await conn.close()


class ConnectionPool:
    """Idle keep-alive connections; a new one while fewer than ``limit`` exist, else wait for one back."""

    def __init__(self, url: str, limit: int, ssl_context: ssl.SSLContext | None = None) -> None:
        if limit < 1:
            raise ConfigError(f"a connection pool needs at least one connection, got {limit}")
        self.url, self.limit, self._ssl = url, limit, ssl_context
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        self._all: list[HttpConnection] = []

    async def get(self) -> HttpConnection:
        if self._idle.empty() and len(self._all) < self.limit:
            conn = HttpConnection(self.url, self._ssl)
            self._all.append(conn)
            return conn
        return await self._idle.get()

    def put(self, conn: HttpConnection) -> None:
        self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


def poisson_arrivals(
    rates_rps: Sequence[float], step_s: float, start: float, rng: random.Random
) -> Iterator[float]:
    """Poisson arrival times (``perf_counter`` seconds) at ``rates_rps[i]`` during step ``i``."""
    for step, rate in enumerate(rates_rps):
        due, end = start + step * step_s, start + (step + 1) * step_s
        while rate > 0:
            due += rng.expovariate(rate)
            if due >= end:
                break
            yield due


async def open_loop(
    pool: ConnectionPool,
    *,
    path: str,
    body: bytes,
    headers: dict[str, str],
    rates_rps: Sequence[float],
    step_s: float,
    seed: int = 0,
) -> list[tuple[float, float, int]]:
    """Requests at Poisson arrivals whose rate follows ``rates_rps`` (one rate per ``step_s``): each as
    (seconds into the run it was due, latency in seconds counted from then, status; 599 = connection broke).
    """
    if step_s <= 0 or any(r < 0 for r in rates_rps):
        raise ConfigError(f"an open loop needs step_s > 0 and rates >= 0, got {step_s} and {list(rates_rps)}")
    log: list[tuple[float, float, int]] = []
    start = time.perf_counter()

    async def one(due: float) -> None:
        conn = await pool.get()
        try:
            status, _ = await conn.request("POST", path, body, headers)
        except UnavailableError:
            status = 599
        finally:
            pool.put(conn)
        log.append((due - start, time.perf_counter() - due, status))

    tasks: list[asyncio.Task[None]] = []
    for due in poisson_arrivals(rates_rps, step_s, start, random.Random(seed)):
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks = [t for t in tasks if not t.done()] if len(tasks) > 1000 else tasks
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return log


_METRIC = re.compile(
    r'^(skyline_(?:inference|execution)_count_total)\{model="([^"]+)",version="[^"]*"\} (\S+)$', re.M
)


async def scrape_batches(
    url: str, model: str, headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None
) -> tuple[float, float] | None:
    """(rows inferred, batches executed) of ``model`` from a skyline /metrics page, or None if absent
    (or not readable with these ``headers``: scraping needs ``read`` on ``metrics``)."""
    conn = HttpConnection(url, ssl_context)
    try:
        status, text = await conn.request("GET", "/metrics", headers=headers)
    except (UnavailableError, OSError):
        return None
    finally:
        await conn.close()
    if status != 200:
        return None
    totals = {"skyline_inference_count_total": 0.0, "skyline_execution_count_total": 0.0}
    found = False
    for name, label, value in _METRIC.findall(text.decode()):
        if label == model:
            totals[name] += float(value)
            found = True
    return (
        (totals["skyline_inference_count_total"], totals["skyline_execution_count_total"]) if found else None
    )


async def run_load(
    url: str,
    *,
    path: str,
    body: bytes,
    concurrency: int,
    duration_s: float,
    rate_per_s: float | None = None,
    headers: dict[str, str] | None = None,
    model: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> LoadResult:
    """Send ``body`` to ``url + path`` for ``duration_s``: closed loop, or open loop at ``rate_per_s``."""
    if concurrency < 1 or duration_s <= 0 or (rate_per_s is not None and rate_per_s <= 0):
        raise ConfigError(
            f"need concurrency ≥ 1, duration > 0, rate > 0; got {concurrency}, {duration_s}, {rate_per_s}"
        )
    sent_headers = {"content-type": "application/json", **(headers or {})}
    before = await scrape_batches(url, model, headers, ssl_context) if model else None
    log: list[tuple[float, int]] = []
    cpu0, start = time.process_time(), time.perf_counter()
    if rate_per_s is None:
        stop_at = start + duration_s
        conns = [HttpConnection(url, ssl_context) for _ in range(concurrency)]
        await asyncio.gather(*(_closed_worker(c, path, body, sent_headers, stop_at, log) for c in conns))
    else:
        pool = ConnectionPool(url, concurrency, ssl_context)
        sent = await open_loop(
            pool, path=path, body=body, headers=sent_headers, rates_rps=[rate_per_s], step_s=duration_s
        )
        await pool.close()
        log = [(latency, status) for _, latency, status in sent]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    after = await scrape_batches(url, model, headers, ssl_context) if model else None
    batch_mean = None
    if before is not None and after is not None and after[1] > before[1]:
        batch_mean = (after[0] - before[0]) / (after[1] - before[1])
    ok = np.array([lat for lat, status in log if status == 200]) * 1000
    return LoadResult(
        throughput_per_s=len(ok) / elapsed,
        latency_p50_ms=float(np.percentile(ok, 50)) if len(ok) else float("nan"),
        latency_p99_ms=float(np.percentile(ok, 99)) if len(ok) else float("nan"),
        errors=sum(1 for _, status in log if status != 200),
        batch_size_mean=batch_mean,
        requests=len(log),
        duration_s=elapsed,
        concurrency=concurrency,
        rate_per_s=rate_per_s,
        client_cpu_s=cpu,
        statuses={str(k): v for k, v in sorted(Counter(s for _, s in log).items())},
    )


def synthesize_body(metadata: dict[str, Any], *, rows: int = 1, seed: int = 0) -> bytes:
    """An OIP inference request of ``rows`` rows fitting a model's metadata (``GET /v2/models/M``)."""
    import orjson

    from skyline.serving.tensors import DATATYPES

    rng = np.random.default_rng(seed)
    inputs = []
    for spec in metadata.get("inputs", []):
        shape = [rows, *spec["shape"][1:]]
        dtype = DATATYPES[spec["datatype"]]
        # Integer inputs are ids and masks: ones are valid for both. Floats are standard normal.
        data = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.ones(shape, dtype)
        inputs.append(
            {"name": spec["name"], "shape": shape, "datatype": spec["datatype"], "data": data.reshape(-1)}
        )
    if not inputs:
        raise ConfigError("the model metadata lists no inputs; is this an Open Inference Protocol server?")
    return orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)


async def fetch_metadata(
    url: str,
    model: str,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """``GET /v2/models/{model}`` as a dict (NotFound/Unavailable errors for a wrong model or URL)."""
    import orjson

    conn = HttpConnection(url, ssl_context)
    try:
        status, body = await conn.request("GET", f"/v2/models/{model}", headers=headers)
    except (OSError, UnavailableError) as exc:
        raise UnavailableError(f"cannot reach {url}: {exc}; is the server running?") from exc
    finally:
        await conn.close()
    if status != 200:
        raise UnavailableError(f"GET /v2/models/{model} at {url} answered {status}: {body[:200]!r}")
    result: dict[str, Any] = orjson.loads(body)
    return result
