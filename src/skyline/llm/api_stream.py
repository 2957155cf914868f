"""Engine outputs turned into OpenAI responses: one JSON body, or server-sent events chunk by chunk.

Both read the same merged output sequence of a call's requests (`merged`), so streaming and not
streaming give the same text. A stream sends a first chunk with the assistant role (chat), one chunk
per output with new text, a chunk with each choice's ``finish_reason``, with ``stream_options:
{"include_usage": true}`` a last chunk with empty ``choices`` and the ``usage`` (every other chunk then
carries ``"usage": null``), and ``data: [DONE]``. Closing either early (the client went away) closes every
request stream, which aborts the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from skyline.errors import SkylineError
from skyline.llm.api_errors import GenerationFailedError
from skyline.llm.api_prepare import Prepared
from skyline.llm.async_engine import RequestStream
from skyline.llm.engine import RequestOutput

__all__ = ["collect", "merged", "sse_events"]


async def merged(streams: list[RequestStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """(choice index, output) of all ``streams`` as they arrive; closing it closes them all."""
    if len(streams) == 1:  # the common case needs no tasks
        try:
            async for output in streams[0]:
                yield 0, output
        finally:
            streams[0].close()
        return
    outbox: asyncio.Queue[tuple[int, RequestOutput]] = asyncio.Queue()

    async def pump(index: int, stream: RequestStream) -> None:
        async for output in stream:
            outbox.put_nowait((index, output))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        for _ in streams:  # until each has finished
            while True:
                index, output = await outbox.get()
                yield index, output
                if output.finished:
                    break
    finally:
        for task in tasks:
            task.cancel()
        for stream in streams:
            stream.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _raise_failed(output: RequestOutput, stream_error: SkylineError | None) -> None:
    if output.finish_reason == "error":
        if stream_error is not None:
            raise stream_error  # the engine refused the request: the client's mistake (4xx)
        raise GenerationFailedError(f"generation failed: {output.error or 'engine error'}")


def _usage(prepared: Prepared, finals: dict[int, RequestOutput]) -> dict[str, Any]:
    completion = sum(o.completion_tokens for o in finals.values())
    # Choices of one prompt share it: its cached tokens count once (the first choice's).
    cached = sum(o.cached_prompt_tokens for i, o in finals.items() if i % prepared.n == 0)
    return {
        "prompt_tokens": prepared.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prepared.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _choice(prepared: Prepared, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    if prepared.kind == "chat":
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


async def collect(prepared: Prepared, streams: list[RequestStream]) -> dict[str, Any]:
    """The whole (non-streaming) response body."""
    texts = [""] * len(streams)
    finals: dict[int, RequestOutput] = {}
    async for index, output in merged(streams):
        texts[index] += output.text_delta
        if output.finished:
            _raise_failed(output, streams[index].error)
            finals[index] = output
    choices = [_choice(prepared, i, texts[i], finals[i].finish_reason) for i in range(len(streams))]
    return {
        "id": prepared.response_id,
        "object": "chat.completion" if prepared.kind == "chat" else "text_completion",
        "created": prepared.created,
        "model": prepared.model,
        "choices": choices,
        "usage": _usage(prepared, finals),
    }


def _event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(prepared: Prepared, choices: list[dict[str, Any]], usage: Any = ...) -> bytes:
    body: dict[str, Any] = {
        "id": prepared.response_id,
        "object": "chat.completion.chunk" if prepared.kind == "chat" else "text_completion",
        "created": prepared.created,
        "model": prepared.model,
        "choices": choices,
    }
    if prepared.include_usage:
        body["usage"] = None if usage is ... else usage
    return _event(body)


def _delta(prepared: Prepared, index: int, text: str | None, finish_reason: str | None) -> dict[str, Any]:
    if prepared.kind == "chat":
        delta: dict[str, Any] = {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}


async def sse_events(prepared: Prepared, streams: list[RequestStream]) -> AsyncIterator[bytes]:
    """The server-sent events of a streaming response."""
    if prepared.kind == "chat":
        roles = [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                 for i in range(len(streams))]  # fmt: skip
        yield _chunk(prepared, roles)
    finals: dict[int, RequestOutput] = {}
    try:
        async for index, output in merged(streams):
            if output.finished:
                _raise_failed(output, streams[index].error)
                finals[index] = output
                yield _chunk(
                    prepared, [_delta(prepared, index, output.text_delta or None, output.finish_reason)]
                )
            elif output.text_delta:
                yield _chunk(prepared, [_delta(prepared, index, output.text_delta, None)])
    except (SkylineError, GenerationFailedError) as exc:  # the headers are sent: the error is an event
        status = 500 if isinstance(exc, GenerationFailedError) else exc.http_status
        kind = "server_error" if status >= 500 else "invalid_request_error"
        yield _event({"error": {"message": str(exc), "type": kind, "param": None, "code": status}})
        yield b"data: [DONE]\n\n"
        return
    if prepared.include_usage:
        yield _chunk(prepared, [], _usage(prepared, finals))
    yield b"data: [DONE]\n\n"
