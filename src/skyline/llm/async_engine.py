"""The engine driven by one thread, its outputs handed to asyncio: the core of the LLM server, without HTTP.

An `Engine` is not thread-safe and `step` blocks for tens of milliseconds, so one thread owns it: it
takes new requests and aborts from an inbox between steps, steps while anything is unfinished, and
sleeps when idle. Each step's outputs go back to the event loop in one ``call_soon_threadsafe`` and are
put on the queue of the request they belong to (`RequestStream`). A stream that is closed before its
request finished (the client went away) aborts the request, which frees its KV blocks.

Admission is bounded: when ``max_waiting`` requests already wait for a slot in the running batch,
`AsyncEngine.submit` raises `OverloadedError` (HTTP 429) with a retry estimate from the recent finish
rate. One request that fails (its ``add_request`` raises, or its constraint does) ends with an
``'error'`` output; a step that raises ends the requests then in flight, and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from skyline.errors import ConfigError, OverloadedError, SkylineError, UnavailableError
from skyline.llm.engine import Engine, EngineStats, GenerationRequest, RequestOutput

__all__ = ["AsyncEngine", "RequestStream", "RequestTiming", "run_to_completion"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestTiming:
    """When a request's outputs arrived on the event loop (``time.perf_counter`` seconds)."""

    submitted_s: float
    first_token_s: float | None = None
    last_token_s: float | None = None
    token_gaps_s: list[float] = field(default_factory=list)  # between consecutive outputs with tokens


class RequestStream:
    """The outputs of one request, in order, as an async iterator; closing it early aborts the request."""

    def __init__(self, request: GenerationRequest, owner: AsyncEngine) -> None:
        self.request = request
        self.timing = RequestTiming(submitted_s=time.perf_counter())
        self.finished = False
        self.error: SkylineError | None = None  # why the engine refused the request, if it did
        self._queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._owner = owner

    def _deliver(self, output: RequestOutput, now_s: float) -> None:
        if output.new_token_ids:
            timing = self.timing
            if timing.first_token_s is None:
                timing.first_token_s = now_s
            elif timing.last_token_s is not None:
                timing.token_gaps_s.append(now_s - timing.last_token_s)
            timing.last_token_s = now_s
        self.finished = output.finished
        self._queue.put_nowait(output)

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[RequestOutput]:
        try:
            while True:
                output = await self._queue.get()
                yield output
                if output.finished:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Abort the request unless it finished (idempotent): the engine frees its blocks."""
        if not self.finished:
            self.finished = True
            self._owner.abort(self.request.request_id)


class AsyncEngine:
    """Runs ``engine`` on its own thread; `submit` requests from the event loop and iterate their streams.

    ``on_finish(stream, finish_reason)`` is called on the event loop when a request ends, its client's
    abort included (metrics).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_waiting: int = 64,
        on_finish: Callable[[RequestStream, str], None] | None = None,
    ) -> None:
        if max_waiting < 1:
            raise ConfigError(f"max_waiting is {max_waiting}; it must be ≥ 1")
        self.engine = engine
        self.max_waiting = max_waiting
        self._on_finish = on_finish
        # A request to add, or the id of one to abort.
        self._inbox: queue.SimpleQueue[GenerationRequest | str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[str, RequestStream] = {}
        self._stats = engine.stats()
        self._finished_at: deque[float] = deque(maxlen=64)  # recent finish times, for Retry-After
        self._in_engine: set[str] = set()  # ids the engine holds (engine thread only)
        self._refusals: dict[str, SkylineError] = {}  # add_request's errors, handed to the streams
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # ------------------------------------------------------------------ event-loop side
    def start(self) -> None:
        """Start the engine thread; call from the event loop that will consume the streams."""
        if self._thread is not None:
            raise ConfigError("this AsyncEngine is already started; build a new one")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Abort what is in flight and stop the thread (the engine itself stays usable)."""
        for request_id in list(self._streams):
            self.abort(request_id)
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    @property
    def waiting(self) -> int:
        """Requests accepted but not yet in the running batch."""
        return max(0, len(self._streams) - self._stats.running)

    def stats(self) -> EngineStats:
        """The engine's stats as of its last step."""
        return self._stats

    def submit(self, request: GenerationRequest) -> RequestStream:
        """Queue ``request``; iterate the returned stream for its outputs. `OverloadedError` when full."""
        if self._thread is None or self._stopping or not self._thread.is_alive():
            raise UnavailableError("the LLM engine is not running; retry once the server is ready")
        if request.request_id in self._streams:
            raise ConfigError(f"request id {request.request_id!r} is already in flight")
        if self.waiting >= self.max_waiting:
            raise OverloadedError(
                f"{self.waiting} requests are already waiting (the limit is {self.max_waiting}); retry later",
                retry_after_s=self._retry_after_s(),
            )
        stream = RequestStream(request, self)
        self._streams[request.request_id] = stream
        self._send(request)
        return stream

    def abort(self, request_id: str) -> None:
        """Stop ``request_id`` (no more outputs reach its stream); unknown ids are ignored."""
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            self._send(request_id)
            if self._on_finish is not None:
                self._on_finish(stream, "abort")

    def _retry_after_s(self) -> float:
        recent = [t for t in self._finished_at if t > time.monotonic() - 60]
        if len(recent) < 2:
            return 1.0
        rate_per_s = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)
        return min(60.0, max(1.0, self.waiting / rate_per_s))

    def _send(self, item: GenerationRequest | str) -> None:
        self._inbox.put(item)
        self._wake.set()

    def _dispatch(self, outputs: list[RequestOutput]) -> None:
        now_s = time.perf_counter()
        for output in outputs:
            stream = self._streams.get(output.request_id)
            refusal = self._refusals.pop(output.request_id, None)
            if stream is None:
                continue  # aborted by its client: nobody listens
            stream.error = refusal
            stream._deliver(output, now_s)
            if output.finished:
                del self._streams[output.request_id]
                self._finished_at.append(time.monotonic())
                if self._on_finish is not None:
                    self._on_finish(stream, output.finish_reason or "stop")

    # ------------------------------------------------------------------ engine thread
    def _run(self) -> None:
        engine = self.engine
        while True:
            outputs = self._take_inbox()
            if self._stopping:
                break
            if engine.has_unfinished():
                outputs.extend(self._step())
            elif not outputs:
                self._wake.wait()
                self._wake.clear()
            self._stats = engine.stats()
            if outputs:
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._dispatch, outputs)
                except RuntimeError:  # the event loop is closed: nobody is left to tell
                    break
        # Leave the engine empty (it may be reused): abort what it still holds and let it free the blocks.
        for request_id in list(self._in_engine):
            engine.abort(request_id)
        while engine.has_unfinished():
            engine.step()
        self._in_engine.clear()
        self._stats = engine.stats()

    def _take_inbox(self) -> list[RequestOutput]:
        """Apply queued adds and aborts; an add the engine refuses becomes that request's error output."""
        refused: list[RequestOutput] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return refused
            if isinstance(item, str):
                self.engine.abort(item)  # its final 'abort' output comes from the next step
                continue
            try:
                self.engine.add_request(item)
            except Exception as exc:  # one bad request must not stop the others
                if isinstance(exc, SkylineError):
                    self._refusals[item.request_id] = exc
                refused.append(_error_output(item.request_id, str(exc), len(item.prompt_token_ids)))
            else:
                self._in_engine.add(item.request_id)

    def _step(self) -> list[RequestOutput]:
        try:
            outputs = self.engine.step()
        except Exception as exc:  # a bug in the engine: end what is in flight, keep serving
            log.exception("LLM engine step failed; ending the requests in flight")
            failed = [rid for rid, s in list(self._streams.items()) if not s.finished]
            for request_id in failed:
                self.engine.abort(request_id)
            return [_error_output(rid, f"the engine failed: {exc}", 0) for rid in failed]
        self._in_engine.difference_update(o.request_id for o in outputs if o.finished)
        return outputs


def _error_output(request_id: str, message: str, prompt_tokens: int) -> RequestOutput:
    return RequestOutput(
        request_id=request_id, new_token_ids=(), text_delta="", finished=True, finish_reason="error",
        prompt_tokens=prompt_tokens, completion_tokens=0, cached_prompt_tokens=0, error=message,
    )  # fmt: skip


def run_to_completion(engine: Engine, request: GenerationRequest) -> Iterator[RequestOutput]:
    """Drive ``engine`` on this thread until ``request`` finishes, yielding its outputs (the CLI's
    local ``generate``; nothing else may use the engine meanwhile)."""
    engine.add_request(request)
    try:
        while engine.has_unfinished():
            for output in engine.step():
                if output.request_id == request.request_id:
                    yield output
                    if output.finished:
                        return
    finally:
        engine.abort(request.request_id)
        while engine.has_unfinished():  # let the engine emit the abort and free the blocks
            engine.step()
