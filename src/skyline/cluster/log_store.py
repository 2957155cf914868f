"""`LogStore`: the output lines of every replica of every job, in arrival order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.database import Database


class LogStore:
    """Job log lines keyed by (job, attempt, rank); ``id`` orders them (and pages through them)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, job_id: str, attempt: int, rank: int, lines: Sequence[str]) -> None:
        if not lines:
            return
        now = self.db.now()
        rows = [{"job_id": job_id, "attempt": attempt, "rank": rank, "at_s": now, "line": ln} for ln in lines]
        with self.db.write() as conn:
            conn.execute(t.job_logs.insert(), rows)

    def lines(self, job_id: str, *, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Log lines of every replica and attempt of a job after ``after_id``, in arrival order."""
        query = (
            sa.select(t.job_logs)
            .where(t.job_logs.c.job_id == job_id, t.job_logs.c.id > after_id)
            .order_by(t.job_logs.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def log_tail(conn: sa.Connection, job_id: str, attempt: int, *, lines: int) -> list[str]:
    """The last ``lines`` lines of one attempt, oldest first (inside the caller's transaction)."""
    rows = conn.execute(
        sa.select(t.job_logs.c.line)
        .where(t.job_logs.c.job_id == job_id, t.job_logs.c.attempt == attempt)
        .order_by(t.job_logs.c.id.desc())
        .limit(lines)
    )
    return [r[0] for r in rows][::-1]
