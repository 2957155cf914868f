"""The client side of the OpenAI API: one chat answer from a server, through the official ``openai`` client
(``skyline llm generate --url``). Its errors become skyline's, so the CLI prints one line."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

from skyline.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    SkylineError,
    UnavailableError,
)

__all__ = ["remote_chat"]

_STATUS_ERRORS: dict[int, type[SkylineError]] = {
    400: ConfigError, 401: AuthError, 403: PermissionDeniedError, 404: NotFoundError, 429: OverloadedError,
}  # fmt: skip


def remote_chat(url: str, prompt: str, *, token: str | None, model: str | None, max_tokens: int | None,
                temperature: float, seed: int | None, stream: bool,
                ssl_context: ssl.SSLContext | None = None) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
    """Ask a server's ``/v1/chat/completions`` through the official ``openai`` client: yields (text, None)
    pieces as they come, then ("", summary) with ``finish_reason`` and ``usage``."""
    import openai

    http = openai.DefaultHttpxClient(verify=ssl_context if ssl_context is not None else True, timeout=600)
    client = openai.OpenAI(
        base_url=url.rstrip("/") + "/v1", api_key=token or "none", http_client=http, max_retries=0
    )
    try:
        name = model or client.models.list().data[0].id
        messages: Any = [{"role": "user", "content": prompt}]
        fields: dict[str, Any] = {"model": name, "messages": messages, "max_tokens": max_tokens,
                                  "temperature": temperature, "seed": seed}  # fmt: skip
        if not stream:
            answer = client.chat.completions.create(**fields)
            usage = answer.usage.model_dump() if answer.usage else None
            yield (
                answer.choices[0].message.content or "",
                {"finish_reason": answer.choices[0].finish_reason, "usage": usage},
            )
            return
        finish, usage = None, None
        for chunk in client.chat.completions.create(
            **fields, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
                if chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content, None
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
        yield "", {"finish_reason": finish, "usage": usage}
    except openai.APIStatusError as exc:
        error = _STATUS_ERRORS.get(exc.status_code, UnavailableError)
        detail = exc.body.get("message", exc.message) if isinstance(exc.body, dict) else exc.message
        raise error(f"the server answered {exc.status_code}: {detail}") from None
    except openai.APIConnectionError as exc:
        raise UnavailableError(f"cannot reach {url}: {exc}; is the server running?") from None
    finally:
        http.close()
