"""The console's live updates: ONE poller per server reads what changed, every open page gets it by SSE.

Why one poller: the cost must not grow with the number of open consoles (the control plane's submit
rate and latency are what a cluster is for). Each ``poll_s`` the poller (on a worker thread, off the
event loop) reads the job transitions newer than the last one it saw (``job_events``, by primary key)
and, when a page watches nodes, each node's newest sample (one index seek per node). It then puts one
`Update` in each subscriber's queue, filtered to what that subscriber may read. With nobody
subscribed the poller is not running at all.

An event's SSE ``id`` is the newest job-event id it covers; a reconnecting page sends it back
(``Last-Event-ID``) and first gets what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.console import queries
from skyline.cluster.console.session import owner_scope
from skyline.security.rbac import Principal

log = logging.getLogger("skyline.console")

TOPICS = frozenset({"jobs", "nodes"})
_QUEUE_SIZE = 32
_BACKLOG = 1000  # job transitions a reconnecting page may catch up on; more and it reloads instead


@dataclass(frozen=True, slots=True)
class Update:
    """What changed in one poll: job transitions (with owners, to filter), counts, node states."""

    last_event: int
    jobs: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str | None, dict[str, int]] = field(default_factory=dict)  # by owner; None = all
    nodes: list[dict[str, Any]] | None = None
    encoded: dict[tuple[str, str | None], str] = field(default_factory=dict)  # by topic and owner scope


_END = Update(last_event=-1)  # the server is stopping: streams end


@dataclass(eq=False, slots=True)
class Subscriber:
    principal: Principal
    topics: frozenset[str]
    queue: asyncio.Queue[Update | None] = field(default_factory=lambda: asyncio.Queue(_QUEUE_SIZE))

    @property
    def owner_scope(self) -> str | None:
        """An operator reads only its own jobs (as in the API's list); others read all."""
        return owner_scope(self.principal)


_e, _j = t.job_events.c, t.jobs.c
_TRANSITIONS = (
    sa.select(_e.id, _e.job_id, _e.attempt, _e.status, _e.at_s)
    .where(_e.id > sa.bindparam("b_after"))
    .order_by(_e.id)
    .limit(sa.bindparam("b_limit"))
)
# What a page needs to draw a job's row without asking the server for it.
_FIELDS = (
    "seq",
    "owner",
    "name",
    "kind",
    "replicas",
    "cpu_milli",
    "gpu_milli",
    "restarts",
    "exit_code",
    "submitted_at",
)
_JOB_FIELDS = sa.select(_j.id, *(_j[f] for f in _FIELDS)).where(
    _j.id.in_(sa.bindparam("b_ids", expanding=True))
)
_NEWEST = sa.select(sa.func.max(_e.id))


def changes_after(conn: sa.Connection, after: int, limit: int) -> tuple[int, int, list[dict[str, Any]]]:
    """Read up to ``limit`` transitions after event ``after``: the newest event id read, how many were
    read, and per job that changed its latest transition with the fields of its row (a burst's
    pending → placed → running of one job is one change)."""
    rows = conn.execute(_TRANSITIONS, {"b_after": after, "b_limit": limit}).all()
    if not rows:
        return after, 0, []
    latest = {job_id: (attempt, status, at_s) for _, job_id, attempt, status, at_s in rows}
    ids = list(latest)
    changes = []
    for start in range(0, len(ids), 500):
        for job_id, *fields in conn.execute(_JOB_FIELDS, {"b_ids": ids[start : start + 500]}):
            attempt, status, at_s = latest[job_id]
            change = {"job_id": job_id, "attempt": attempt, "status": status, "at_s": at_s}
            changes.append(change | dict(zip(_FIELDS, fields, strict=True)))
    return int(rows[-1][0]), len(rows), changes


class ChangeFeed:
    """Polls the store while anyone listens; `stream` yields server-sent events for one page."""

    def __init__(self, engine: sa.Engine, *, poll_s: float, lifetime_s: float) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.lifetime_s = lifetime_s
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_event = -1
        self._node_marks: dict[str, tuple[str, float]] = {}
        self.polls = 0

    # ------------------------------------------------------------------ polling
    def _poll(self, owners: set[str | None], want_nodes: bool) -> Update:
        with self.engine.connect() as conn:
            if self._last_event < 0:  # first poll: start from now, pages render the present themselves
                self._last_event = int(conn.execute(_NEWEST).scalar() or 0)
            self._last_event, _, rows = changes_after(conn, self._last_event, 5000)
            counts = {o: queries.job_counts(conn, owner=o) for o in owners} if rows else {}
            nodes = self._changed_nodes(conn) if want_nodes else None
        return Update(self._last_event, rows, counts, nodes)

    def _changed_nodes(self, conn: sa.Connection) -> list[dict[str, Any]] | None:
        states = conn.execute(sa.select(t.nodes.c.id, t.nodes.c.status, t.nodes.c.tier)).all()
        latest = queries.latest_samples(conn, [s[0] for s in states])
        out, marks = [], {}
        for node_id, status, tier in states:
            sample = latest.get(node_id) or {}
            marks[node_id] = (status, float(sample.get("at_s") or 0.0))
            out.append({"id": node_id, "status": status, "tier": tier, **sample})
        changed = marks != self._node_marks
        self._node_marks = marks
        return out if changed else None

    async def _run(self) -> None:
        while self._subscribers:
            started = time.monotonic()
            owners = {s.owner_scope for s in self._subscribers if "jobs" in s.topics}
            want_nodes = any("nodes" in s.topics for s in self._subscribers)
            try:
                update = await asyncio.to_thread(self._poll, owners, want_nodes)
                self.polls += 1
            except sa.exc.SQLAlchemyError:  # the next poll retries; pages keep their last state
                log.exception("console change feed: poll failed")
                update = None
            if update is not None and (update.jobs or update.nodes is not None):
                for subscriber in list(self._subscribers):
                    _offer(subscriber, update)
            await asyncio.sleep(max(0.0, self.poll_s - (time.monotonic() - started)))
        self._task = None

    # ------------------------------------------------------------------ subscribers
    def backlog(self, principal: Principal, after: int) -> tuple[int, list[dict[str, Any]]] | None:
        """The newest event id and the job changes after event ``after`` that a reconnecting page
        missed; None: too many (it reloads instead)."""
        with self.engine.connect() as conn:
            newest, read, rows = changes_after(conn, after, _BACKLOG + 1)
        if read > _BACKLOG:
            return None
        return newest, _visible(rows, owner_scope(principal))

    async def stream(
        self, principal: Principal, topics: frozenset[str], last_event: int | None
    ) -> AsyncIterator[str]:
        """Server-sent events for one page until its lifetime ends (the browser then reconnects)."""
        subscriber = Subscriber(principal, topics)
        self._loop = asyncio.get_running_loop()
        self._subscribers.add(subscriber)
        if self._task is None:  # it starts from now: each page catches up from its own render
            self._last_event = -1
            self._task = asyncio.create_task(self._run())
        try:
            yield "retry: 1000\n\n"
            delivered = last_event  # the newest event this page has: sent back as Last-Event-ID
            if last_event is not None and "jobs" in topics:
                missed = await asyncio.to_thread(self.backlog, principal, last_event)
                if missed is None:
                    yield _event("resync", {})
                else:
                    delivered = missed[0]
                    yield _event("jobs", {"changes": missed[1]}, event_id=delivered)
            deadline = time.monotonic() + self.lifetime_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    update = await asyncio.wait_for(subscriber.queue.get(), timeout=min(left, 10.0))
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if update is _END:
                    return
                if update is None:  # it fell behind: the page reloads what it shows
                    yield _event("resync", {})
                    return
                for text in _render(subscriber, update):
                    yield text
                delivered = max(delivered or 0, update.last_event)
            # The lifetime is over: the browser reconnects and resumes after ``delivered``.
            yield _event("renew", {}, event_id=delivered)
        finally:
            self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every open stream now (the server is stopping); callable from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_all)

    def _end_all(self) -> None:
        for subscriber in list(self._subscribers):
            while not subscriber.queue.empty():
                subscriber.queue.get_nowait()
            subscriber.queue.put_nowait(_END)


def _offer(subscriber: Subscriber, update: Update) -> None:
    try:
        subscriber.queue.put_nowait(update)
    except asyncio.QueueFull:  # a stalled page: drop its backlog and tell it to resync
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)


def _visible(rows: list[dict[str, Any]], owner: str | None) -> list[dict[str, Any]]:
    return [r for r in rows if owner is None or r["owner"] == owner]


def _render(subscriber: Subscriber, update: Update) -> list[str]:
    """The events for one subscriber, encoded once per owner scope and shared by its peers."""
    out = []
    if "jobs" in subscriber.topics and update.jobs:
        scope = subscriber.owner_scope
        if ("jobs", scope) not in update.encoded:
            changes = _visible(update.jobs, scope)
            payload = {"changes": changes, "counts": update.counts.get(scope)}
            update.encoded["jobs", scope] = (
                _event("jobs", payload, event_id=update.last_event) if changes else ""
            )
        out.append(update.encoded["jobs", scope])
    if "nodes" in subscriber.topics and update.nodes is not None:
        if ("nodes", None) not in update.encoded:
            update.encoded["nodes", None] = _event("nodes", {"nodes": update.nodes})
        out.append(update.encoded["nodes", None])
    return [text for text in out if text]


def _event(name: str, data: Any, *, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    # OPT_NON_STR_KEYS: SQLAlchemy row keys are a str subclass (quoted_name), which orjson refuses alone.
    return f"{head}event: {name}\ndata: {orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()}\n\n"


def parse_topics(raw: str | None) -> frozenset[str]:
    wanted = frozenset(x for x in (raw or "jobs,nodes").split(",") if x)
    return wanted & TOPICS


def last_event_id(header: str | None, query: str | None) -> int | None:
    for raw in (header, query):
        if (found := queries.row_id(raw)) is not None:
            return found
    return None
