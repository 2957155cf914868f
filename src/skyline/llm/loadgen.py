"""A load client for OpenAI-compatible LLM servers (``skyline bench llm``).

Every request is a streamed ``/v1/completions`` call with a fixed output length (``min_tokens`` =
``max_tokens``, ``ignore_eos``: vLLM's extensions, which skyline honours), so that runs compare. Three
ways to send them: closed loop (``concurrency`` clients, each sends its next request when the last one
finished), open loop (Poisson arrivals at ``rate_per_s``), or a trace (the arrival times and token
lengths of the Azure LLM inference trace's CSV, ``TIMESTAMP,ContextTokens,GeneratedTokens``, lengths
multiplied by ``prompt_scale`` / ``output_scale`` and capped). In open loop and trace replay a request's
latencies count from the moment it was due, not from when a connection was free (no coordinated
omission). Measured per request: time to first token (the first chunk with text), the gaps between
chunks (inter-token latency), end-to-end latency and the output tokens the server reports.
"""

from __future__ import annotations

import asyncio
import csv
import random
import ssl
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from skyline.errors import ConfigError, DataError, UnavailableError

__all__ = ["LoadConfig", "LoadResult", "TraceRequest", "read_trace", "run_load"]

_WORDS = (
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "his",
    "her", "they", "this", "have", "are", "not", "but", "had", "one", "all", "were", "when", "there", "can",
    "an", "your", "which", "their", "said", "if", "do", "will", "each", "about", "how", "up", "out", "them",
    "then", "she", "many", "some", "so", "these", "would", "other", "into", "has", "more", "two", "time",
    "like", "look", "write", "go", "see", "number", "no", "way", "could", "people", "than", "first", "water",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """One load run (see the module docstring for the three modes)."""

    url: str
    model: str | None = None  # None: the first model of GET /v1/models
    concurrency: int = 4  # closed loop: clients; open loop and trace: most requests in flight
    duration_s: float = 30.0
    rate_per_s: float | None = None
    trace: Path | None = None
    prompt_tokens: int = 128  # synthetic prompts (no trace): about this many tokens
    max_tokens: int = 64  # output tokens per request (no trace), and the cap of a trace's
    prompt_scale: float = 0.1  # trace ContextTokens × this (the trace's prompts are for far larger models)
    output_scale: float = 1.0
    max_prompt_tokens: int = 1024
    token: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url {self.url!r} must start with http:// or https://")
        if self.concurrency < 1 or not self.duration_s > 0:
            raise ConfigError(
                f"need concurrency ≥ 1 and duration > 0, got {self.concurrency} and {self.duration_s}"
            )
        if self.rate_per_s is not None and (not self.rate_per_s > 0 or self.trace is not None):
            raise ConfigError("give either a positive --rate (Poisson) or a --trace, not both")
        for name in ("prompt_tokens", "max_tokens", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}; it must be ≥ 1")
        if not (self.prompt_scale > 0 and self.output_scale > 0):
            raise ConfigError("prompt_scale and output_scale must be positive")

    @property
    def mode(self) -> str:
        return "trace" if self.trace is not None else "poisson" if self.rate_per_s is not None else "closed"


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request to send: when (seconds from the start) and how long its prompt and output are (tokens)."""

    at_s: float
    prompt_tokens: int
    output_tokens: int


def read_trace(path: Path, *, duration_s: float, prompt_scale: float, output_scale: float,
               max_prompt_tokens: int, max_tokens: int) -> list[TraceRequest]:  # fmt: skip
    """The requests of an Azure LLM trace CSV that arrive within ``duration_s`` of its first one."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror}") from exc
    requests: list[TraceRequest] = []
    start = None
    for line, row in enumerate(rows, start=2):
        try:
            at = datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp()
            context, generated = int(row["ContextTokens"]), int(row["GeneratedTokens"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}:{line}: expected TIMESTAMP,ContextTokens,GeneratedTokens ({exc}); is this the Azure LLM trace?"
            ) from None
        start = at if start is None else start
        if at - start >= duration_s:
            break
        requests.append(TraceRequest(
            at_s=at - start,
            prompt_tokens=min(max_prompt_tokens, max(1, round(context * prompt_scale))),
            output_tokens=min(max_tokens, max(1, round(generated * output_scale))),
        ))  # fmt: skip
    if not requests:
        raise DataError(f"{path} holds no requests; give the Azure LLM trace CSV")
    return requests


@dataclass(slots=True)
class _Record:
    due_s: float
    status: int = 0
    first_s: float | None = None
    end_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load run measured; latencies in milliseconds."""

    mode: str
    requests: int
    completed: int
    errors: int
    statuses: dict[str, int]
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    prompt_tokens_mean: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    concurrency: int
    rate_per_s: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prompt(tokens: int, rng: random.Random, serial: int) -> str:
    # A distinct opening per request, so that the server's prefix cache does not make the run look faster.
    return f"Request {serial}:" + "".join(f" {rng.choice(_WORDS)}" for _ in range(max(0, tokens - 3)))


async def _send(
    client: Any, config: LoadConfig, model: str, job: TraceRequest, record: _Record, serial: int
) -> None:
    body = {
        "model": model, "prompt": _prompt(job.prompt_tokens, random.Random(config.seed * 1_000_003 + serial), serial),
        "max_tokens": job.output_tokens, "min_tokens": job.output_tokens, "ignore_eos": True, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    last = None
    try:
        async with client.stream("POST", "/v1/completions", json=body) as answer:
            record.status = answer.status_code
            async for line in answer.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = orjson.loads(line[6:])
                now = time.perf_counter()
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    if record.first_s is None:
                        record.first_s = now
                    elif last is not None:
                        record.gaps_s.append(now - last)
                    last = now
                if chunk.get("usage"):
                    record.output_tokens = chunk["usage"]["completion_tokens"]
                    record.prompt_tokens = chunk["usage"]["prompt_tokens"]
                if "error" in chunk:
                    record.status = 599
    except Exception:  # httpx's transport errors: the request failed, the run goes on
        record.status = 599
    record.end_s = time.perf_counter()


def _schedule(config: LoadConfig) -> list[TraceRequest] | None:
    """The open-loop arrivals (None in closed loop)."""
    if config.trace is not None:
        return read_trace(config.trace, duration_s=config.duration_s, prompt_scale=config.prompt_scale,
                          output_scale=config.output_scale, max_prompt_tokens=config.max_prompt_tokens,
                          max_tokens=config.max_tokens)  # fmt: skip
    if config.rate_per_s is None:
        return None
    rng, at, jobs = random.Random(config.seed), 0.0, list[TraceRequest]()
    while True:
        at += rng.expovariate(config.rate_per_s)
        if at >= config.duration_s:
            return jobs
        jobs.append(TraceRequest(at, config.prompt_tokens, config.max_tokens))


async def _closed(client: Any, config: LoadConfig, model: str, start: float, records: list[_Record]) -> None:
    job = TraceRequest(0.0, config.prompt_tokens, config.max_tokens)
    serial = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < start + config.duration_s:
            record = _Record(due_s=time.perf_counter())
            records.append(record)
            await _send(client, config, model, job, record, next(serial))

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))


async def _open(client: Any, config: LoadConfig, model: str, jobs: list[TraceRequest], start: float,
                records: list[_Record]) -> None:  # fmt: skip
    slots = asyncio.Semaphore(config.concurrency)

    async def one(serial: int, job: TraceRequest, record: _Record) -> None:
        async with slots:
            await _send(client, config, model, job, record, serial)

    tasks = []
    for serial, job in enumerate(jobs):
        delay = start + job.at_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = _Record(due_s=start + job.at_s)
        records.append(record)
        tasks.append(asyncio.create_task(one(serial, job, record)))
    await asyncio.gather(*tasks)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def _summarize(config: LoadConfig, records: list[_Record], elapsed_s: float) -> LoadResult:
    ok = [r for r in records if r.status == 200 and r.end_s is not None]
    ttft = [r.first_s - r.due_s for r in ok if r.first_s is not None]
    gaps = [g for r in ok for g in r.gaps_s]
    e2e = [r.end_s - r.due_s for r in ok if r.end_s is not None]
    tokens = sum(r.output_tokens for r in ok)
    return LoadResult(
        mode=config.mode, requests=len(records), completed=len(ok), errors=len(records) - len(ok),
        statuses={str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
        duration_s=elapsed_s, output_tokens=tokens, output_tokens_per_s=tokens / elapsed_s,
        requests_per_s=len(ok) / elapsed_s,
        prompt_tokens_mean=float(np.mean([r.prompt_tokens for r in ok])) if ok else float("nan"),
        ttft_p50_ms=_percentile(ttft, 50), ttft_p99_ms=_percentile(ttft, 99),
        itl_p50_ms=_percentile(gaps, 50), itl_p99_ms=_percentile(gaps, 99),
        e2e_p50_ms=_percentile(e2e, 50), e2e_p99_ms=_percentile(e2e, 99),
        concurrency=config.concurrency, rate_per_s=config.rate_per_s,
    )  # fmt: skip


async def _model(client: Any) -> str:
    try:
        answer = await client.get("/v1/models")
    except Exception as exc:
        raise UnavailableError(f"cannot reach the server: {exc}; is it running?") from exc
    if answer.status_code != 200:
        raise UnavailableError(f"GET /v1/models answered {answer.status_code}: {answer.text[:200]}")
    data = answer.json().get("data") or []
    if not data:
        raise UnavailableError("the server lists no models (or this token may not see them)")
    return str(data[0]["id"])


async def run_load(config: LoadConfig, *, ssl_context: ssl.SSLContext | None = None) -> LoadResult:
    """Run ``config`` against its server; the result summarizes every request sent."""
    import httpx

    headers = {"authorization": f"Bearer {config.token}"} if config.token else {}
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    jobs = _schedule(config)
    async with httpx.AsyncClient(base_url=config.url, headers=headers, limits=limits, timeout=600,
                                 verify=ssl_context if ssl_context is not None else True) as client:  # fmt: skip
        model = config.model or await _model(client)
        records: list[_Record] = []
        start = time.perf_counter()
        if jobs is None:
            await _closed(client, config, model, start, records)
        else:
            await _open(client, config, model, jobs, start, records)
        elapsed = time.perf_counter() - start
    return _summarize(config, records, elapsed)
