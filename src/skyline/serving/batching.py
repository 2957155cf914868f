"""Dynamic batching in plain asyncio: requests queue up, each model instance takes a batch and runs it.

One `DynamicBatcher` per served model version. ``submit`` puts a request (a dict of arrays whose first
dimension is the batch) on a bounded queue and awaits its answer; ``instances`` worker coroutines each take
the oldest request, add whatever else is queued (up to ``max_batch_size`` rows), maybe wait a little for
more, and run the batch on a thread of their own. Guarantees:

* nothing is lost: a request is answered with its rows, an error, or a timeout; closing drains first;
* nothing is answered twice: a request's future is resolved once, and a request whose caller gave up
  (timeout, disconnect) before its batch formed is dropped, not computed;
* a full queue refuses at once with `OverloadedError` (HTTP 429 + Retry-After) instead of growing;
* adaptive: a worker waits for more requests (up to ``max_queue_delay_ms`` after the oldest request
  arrived or an instance freed up for it) only when there is evidence that more are coming: clients
  answered by the last batch have not all come back yet, or other requests are in flight and arrive
  faster than what is left of the window. A lone client's request is never held. With
  ``adaptive=False`` a worker always waits the full window (classic Triton/Ray behaviour).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from skyline.errors import ConfigError, OverloadedError, UnavailableError
from skyline.serving.tensors import InvalidRequestError

Arrays = dict[str, np.ndarray[Any, Any]]
Compute = Callable[[Arrays], Mapping[str, np.ndarray[Any, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchingConfig:
    """How one model batches: sizes in rows, delays in milliseconds, timeouts in seconds."""

    max_batch_size: int = 32
    max_queue_delay_ms: float = 2.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    timeout_s: float = 30.0
    instances: int = 1
    adaptive: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size", self.max_batch_size, "≥ 1"),
            (self.max_queue_delay_ms >= 0, "max_queue_delay_ms", self.max_queue_delay_ms, "≥ 0"),
            (self.max_queue_size >= 1, "max_queue_size", self.max_queue_size, "≥ 1"),
            (self.timeout_s > 0, "timeout_s", self.timeout_s, "> 0"),
            (self.instances >= 1, "instances", self.instances, "≥ 1"),
        ]
        for ok, name, value, rule in checks:
            if not ok:
                raise ConfigError(f"batching {name} is {value}; it must be {rule}")
        bad = [s for s in self.preferred_batch_sizes if not 1 <= s <= self.max_batch_size]
        if bad:
            raise ConfigError(
                f"preferred_batch_sizes {bad} fall outside 1..max_batch_size ({self.max_batch_size})"
            )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "preferred_batch_sizes": list(self.preferred_batch_sizes)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchingConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown batching setting(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "preferred_batch_sizes" in values:
            values["preferred_batch_sizes"] = tuple(int(v) for v in values["preferred_batch_sizes"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"batching settings {values} are malformed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one executed batch looked like, for metrics: rows, each request's queue wait, compute time."""

    rows: int
    requests: int
    queue_s: tuple[float, ...]
    compute_s: float


class _Pending:
    __slots__ = ("enqueued_at", "future", "inputs", "rows")

    def __init__(self, inputs: Arrays, rows: int, future: asyncio.Future[Arrays]) -> None:
        self.inputs, self.rows, self.future = inputs, rows, future
        self.enqueued_at = time.perf_counter()


def _rows_of(inputs: Mapping[str, np.ndarray[Any, Any]]) -> int:
    sizes = {int(a.shape[0]) if a.ndim else 0 for a in inputs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise InvalidRequestError(f"inputs must share one batch dimension ≥ 1; got sizes {sorted(sizes)}")
    return sizes.pop()


class DynamicBatcher:
    """Queue requests for one model and run them in batches on ``config.instances`` parallel workers."""

    def __init__(
        self,
        compute: Compute,
        config: BatchingConfig,
        *,
        name: str = "model",
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.compute, self.config, self.name, self.on_batch = compute, config, name, on_batch
        self._queue: deque[_Pending] = deque()
        self._arrival = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._closing = False
        self._gap_s = math.inf  # moving average of the time between arrivals
        self._last_arrival = 0.0
        # Closed-loop clients answered by the last batch come back soon: a worker that frees up while
        # they are still on their way waits for them (one window) instead of splitting the load into
        # alternating half batches.
        self._answered_last = 0
        self._completed_at = -math.inf
        self._arrivals_since_completion = 0
        self._row_s = 0.0  # moving average of compute time per row, for Retry-After
        self._executor = ThreadPoolExecutor(config.instances, thread_name_prefix=f"skyline-{name}")
        self._workers: list[asyncio.Task[None]] = []

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (not counting those being computed)."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered."""
        return self._in_flight

    def start(self) -> None:
        """Start the workers; call from inside the running event loop."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"{self.name}-instance-{i}")
                for i in range(self.config.instances)
            ]

    async def submit(self, inputs: Arrays, *, timeout_s: float | None = None) -> Arrays:
        """Queue ``inputs`` and return the model's outputs for exactly those rows."""
        if self._closing:
            raise UnavailableError(f"model {self.name!r} is unloading; retry, a newer version may be loaded")
        rows = _rows_of(inputs)
        if rows > self.config.max_batch_size:
            raise InvalidRequestError(
                f"request has {rows} rows; model {self.name!r} takes at most {self.config.max_batch_size}"
            )
        if len(self._queue) >= self.config.max_queue_size:
            wait_s = len(self._queue) * self._row_s / self.config.instances
            raise OverloadedError(
                f"model {self.name!r} has {len(self._queue)} requests queued (the limit); retry later",
                retry_after_s=max(1.0, math.ceil(wait_s)),
            )
        self._note_arrival()
        pending = _Pending(inputs, rows, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._in_flight += 1
        self._idle.clear()
        self._arrival.set()
        limit = self.config.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(pending.future, limit)
        except TimeoutError:
            raise UnavailableError(
                f"model {self.name!r} did not answer within {limit} s; retry or raise the timeout"
            ) from None
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def close(self, *, drain: bool = True) -> None:
        """Refuse new requests, answer (drain) or cancel the queued ones, then stop the workers."""
        self._closing = True
        if drain:
            await self._idle.wait()
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(UnavailableError(f"model {self.name!r} was unloaded"))
        self._queue.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._executor.shutdown(wait=True)

    def _note_arrival(self) -> None:
        now = time.perf_counter()
        if self._last_arrival:
            gap = now - self._last_arrival
            self._gap_s = gap if math.isinf(self._gap_s) else 0.8 * self._gap_s + 0.2 * gap
        self._last_arrival = now
        self._arrivals_since_completion += 1

    async def _next(self) -> _Pending:
        while True:
            while self._queue:
                pending = self._queue.popleft()
                if not pending.future.done():  # its caller may have timed out or gone away
                    return pending
            self._arrival.clear()
            await self._arrival.wait()

    def _fill(self, batch: list[_Pending], rows: int) -> int:
        while self._queue and rows + self._queue[0].rows <= self.config.max_batch_size:
            pending = self._queue.popleft()
            if not pending.future.done():
                batch.append(pending)
                rows += pending.rows
        return rows

    def _should_wait(self, rows: int, deadline: float) -> bool:
        cfg = self.config
        remaining = deadline - time.perf_counter()
        if remaining <= 0 or rows >= cfg.max_batch_size or rows in cfg.preferred_batch_sizes:
            return False
        if self._queue:  # the head did not fit: the batch is as full as it gets
            return False
        if not cfg.adaptive:
            return True
        returning = self._answered_last - self._arrivals_since_completion > 0
        others_in_flight = self._in_flight > rows and self._gap_s < remaining
        return returning or others_in_flight

    async def _form_batch(self) -> tuple[list[_Pending], int]:
        first = await self._next()
        batch, rows = [first], first.rows
        # The window opens when the request arrived or, if it queued behind a running batch, when an
        # instance freed up for it.
        deadline = max(first.enqueued_at, self._completed_at) + self.config.max_queue_delay_ms / 1000
        rows = self._fill(batch, rows)
        while self._should_wait(rows, deadline):
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), deadline - time.perf_counter())
            except TimeoutError:
                break
            rows = self._fill(batch, rows)
        return batch, rows

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, rows = await self._form_batch()
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self.compute, self._merge(live))
                answers = self._split(outputs, live)
            except Exception as exc:  # the batch failed: every caller in it gets the error, once
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            compute_s = time.perf_counter() - started
            self._row_s = compute_s / rows if not self._row_s else 0.8 * self._row_s + 0.2 * compute_s / rows
            for pending, answer in zip(live, answers, strict=True):
                if not pending.future.done():
                    pending.future.set_result(answer)
            self._answered_last, self._completed_at = len(live), time.perf_counter()
            self._arrivals_since_completion = 0
            if self.on_batch is not None:
                queue_s = tuple(started - p.enqueued_at for p in live)
                self.on_batch(BatchStats(sum(p.rows for p in live), len(live), queue_s, compute_s))

    @staticmethod
    def _merge(batch: list[_Pending]) -> Arrays:
        if len(batch) == 1:
            return batch[0].inputs
        return {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}

    @staticmethod
    def _split(outputs: Mapping[str, np.ndarray[Any, Any]], batch: list[_Pending]) -> list[Arrays]:
        total = sum(p.rows for p in batch)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise UnavailableError(
                    f"model output {name!r} has shape {list(array.shape)}; expected {total} rows first"
                )
        answers, start = [], 0
        for pending in batch:
            stop = start + pending.rows
            answers.append({name: array[start:stop] for name, array in outputs.items()})
            start = stop
        return answers
