"""The Jobs views: a filtered, paged table; a job's page with its timeline, replicas and live logs;
submit and cancel (for roles the permission table lets write jobs)."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from skyline.cluster.api_models import JobIn
from skyline.cluster.console import queries
from skyline.cluster.console.core import Console
from skyline.cluster.console.pages_access import SSE_HEADERS, read_form
from skyline.cluster.console.session import Session, check_csrf, owner_scope
from skyline.core import JobStatus
from skyline.errors import SkylineError
from skyline.security.rbac import authorize

FINISHED = frozenset(s.value for s in JobStatus if s.is_finished())
LOG_POLL_S = 0.5


def _job_filter(console: Console, session: Session, params: dict[str, str]) -> queries.JobFilter:
    """The table's filter from the query string; an operator sees only its own jobs (as in the API)."""
    status = params.get("status") if params.get("status") in queries.STATUSES else None
    tier = params.get("tier") if params.get("tier") in queries.TIERS else None
    owner = owner_scope(session.principal) or (params.get("user") or "").strip()[:255] or None
    return queries.JobFilter(
        status=status, owner=owner, tier=tier, before=queries.row_id(params.get("before")),
        after=queries.row_id(params.get("after")), limit=console.config.page_size,
    )  # fmt: skip


def register(ui: FastAPI, console: Console) -> None:
    _views(ui, console)
    _actions(ui, console)


def _views(ui: FastAPI, console: Console) -> None:
    @ui.get("/jobs")
    def jobs_page(request: Request) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "jobs")
        query = _job_filter(console, session, dict(request.query_params))
        with console.engine.connect() as conn:
            page = queries.job_page(conn, query)
        return console.page(
            request, "jobs.html", session, fragment="_jobs_table.html", nav="jobs", page=page,
            query=query, statuses=queries.STATUSES, tiers=queries.TIERS, last_event=console.newest_event(),
            form_error="", form={},
        )  # fmt: skip

    @ui.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: str) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "jobs")  # the role first: a 404 would tell who exists
        last_event = console.newest_event()
        with console.engine.connect() as conn:
            job = queries.job_detail(conn, job_id)
            authorize(session.principal, "read", "jobs", owner=job["owner"])
            timeline = queries.timeline(conn, job_id)
            lines = queries.log_tail(conn, job_id)
        return console.page(
            request, "job.html", session, fragment="_job_summary.html", nav="jobs", job=job,
            timeline=timeline, lines=lines, finished=job["status"] in FINISHED, last_event=last_event,
        )  # fmt: skip

    @ui.get("/jobs/{job_id}/logs/stream")
    async def follow_logs(
        request: Request, job_id: str, after: Annotated[int, Query(ge=0, le=queries.MAX_ROW_ID)] = 0
    ) -> Response:
        """Server-sent ``lines`` events as the job's replicas print; ``end`` once it finished."""
        session = console.session(request)
        authorize(session.principal, "read", "jobs")
        with console.engine.connect() as conn:
            owner = queries.job_owner(conn, job_id)
        authorize(session.principal, "read", "jobs", owner=owner)
        resume = queries.row_id(request.headers.get("last-event-id"))
        start = resume if resume is not None else after
        stream = _log_events(console, job_id, start)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def _actions(ui: FastAPI, console: Console) -> None:
    """Submit and cancel: the same calls the API makes (`ControlPlane.submit` admits, `cancel` stops)."""

    @ui.post("/jobs")
    async def submit(request: Request) -> Response:
        form = await read_form(request)
        session = console.session(request)
        check_csrf(request, session, form.get("csrf"))
        authorize(session.principal, "create", "jobs")
        try:
            body = JobIn.model_validate(_job_fields(form))
            record, _ = console.control.submit(body.to_request(None), owner=session.principal.subject)
        except (ValidationError, SkylineError) as exc:
            return _submit_refused(console, request, session, form, exc)
        return RedirectResponse(f"/ui/jobs/{record.id}", status_code=303)

    @ui.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str) -> Response:
        form = await read_form(request)
        session = console.session(request)
        check_csrf(request, session, form.get("csrf"))
        authorize(session.principal, "delete", "jobs")
        with console.engine.connect() as conn:
            owner = queries.job_owner(conn, job_id)
        authorize(session.principal, "delete", "jobs", owner=owner)
        console.control.cancel(job_id)
        return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


def _job_fields(form: dict[str, str]) -> dict[str, Any]:
    """The submit form's fields as the API's `JobIn` takes them (empty fields keep the defaults)."""
    fields: dict[str, Any] = {k: form[k] for k in ("command", "name", "kind") if form.get(k)}
    for key in ("cpus", "gpus", "memory_mib", "replicas", "priority"):
        if form.get(key, "").strip():
            fields[key] = form[key].strip()
    if form.get("tier"):
        fields["tiers"] = [form["tier"]]
    return fields


def _submit_refused(
    console: Console, request: Request, session: Session, form: dict[str, str], exc: Exception
) -> Response:
    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]]
        message, status = "invalid job: " + "; ".join(problems), 422
    else:
        assert isinstance(exc, SkylineError)
        message, status = str(exc), exc.http_status
    query = _job_filter(console, session, {})
    with console.engine.connect() as conn:
        page = queries.job_page(conn, query)
    return console.page(
        request, "jobs.html", session, status=status, nav="jobs", page=page, query=query,
        statuses=queries.STATUSES, tiers=queries.TIERS, last_event=console.newest_event(),
        form_error=message, form={k: v for k, v in form.items() if k != "csrf"},
    )  # fmt: skip


async def _log_events(console: Console, job_id: str, after: int) -> AsyncIterator[str]:
    """Batches of new lines every `LOG_POLL_S` until the job finished and its last lines were sent."""

    def poll(after_id: int) -> tuple[list[dict[str, Any]], str | None]:
        with console.engine.connect() as conn:
            return queries.logs_after(conn, job_id, after_id), queries.job_status(conn, job_id)

    yield "retry: 1000\n\n"
    deadline = time.monotonic() + console.config.stream_lifetime_s
    while time.monotonic() < deadline:
        lines, status = await asyncio.to_thread(poll, after)
        if lines:
            after = lines[-1]["id"]
            data = json.dumps([{k: ln[k] for k in ("rank", "attempt", "line")} for ln in lines])
            yield f"id: {after}\nevent: lines\ndata: {data}\n\n"
        elif status in FINISHED or status is None:
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        else:
            await asyncio.sleep(LOG_POLL_S)
