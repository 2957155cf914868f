"""Signing in and out, the static files, and the live-update stream (SSE)."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from skyline.cluster.console.core import SECURITY_HEADERS, Console
from skyline.cluster.console.feed import last_event_id, parse_topics
from skyline.cluster.console.session import COOKIE, LoginRequiredError, check_csrf, check_origin, safe_next
from skyline.errors import AuthError, ConfigError
from skyline.security.rbac import authorize

MAX_FORM_BYTES = 256 * 1024
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ConfigError(f"form body over {MAX_FORM_BYTES} bytes; send less")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"malformed form body: {exc}") from None
    return {k: v[-1] for k, v in fields.items()}


def register(ui: FastAPI, console: Console) -> None:
    _sign_in(ui, console)
    _files_and_events(ui, console)


def _sign_in(ui: FastAPI, console: Console) -> None:
    @ui.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return console.page(request, "login.html", None, next=safe_next(next), error="")

    @ui.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)
        form = await read_form(request)
        target = safe_next(form.get("next"))
        token = form.get("token", "").strip()
        try:
            console.authority.verify(token)
        except AuthError as exc:
            # Say why (malformed, unknown, revoked, expired), never echo the token.
            return console.page(request, "login.html", None, status=401, next=target, error=str(exc))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", path="/ui",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @ui.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        try:
            session = console.session(request)
        except LoginRequiredError:
            return RedirectResponse("/ui/login", status_code=303)
        check_csrf(request, session, form.get("csrf"))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response


def _files_and_events(ui: FastAPI, console: Console) -> None:
    @ui.get("/static/{name}")
    def own_file(name: str) -> Response:
        return _file(console, "static", name)

    @ui.get("/vendor/{name}")
    def vendor_file(name: str) -> Response:
        return _file(console, "vendor", name)

    @ui.get("/events")
    async def events(request: Request, topics: str | None = None, last_event: str | None = None) -> Response:
        """Server-sent events: ``jobs`` (transitions and counts) and ``nodes`` (states and samples), each
        only for a principal the permission table lets read it (as the pages that show them)."""
        session = console.session(request)
        wanted = parse_topics(topics)
        for kind in sorted(wanted):  # a topic is named after the resource kind it carries
            authorize(session.principal, "read", kind)
        if "nodes" in wanted:
            authorize(session.principal, "read", "metrics")  # node events carry their latest samples
        after = last_event_id(request.headers.get("last-event-id"), last_event)
        stream = console.feed.stream(session.principal, wanted, after)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def _file(console: Console, prefix: str, name: str) -> Response:
    asset = console.assets.get(prefix, name)
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=31536000, immutable"}
    return FileResponse(asset.path, media_type=asset.media_type, headers=headers)
