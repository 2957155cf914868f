"""`SubmitBatcher`: group commit for the API's job submits.

Under a burst, many ``POST /v1/jobs`` requests reach the event loop together; writing each in its own
transaction paid SQLAlchemy's per-statement work and a commit per job. The batcher gathers the submits
that arrive in one turn of the event loop and hands them to `ControlPlane.submit_many` on the next: one
transaction, one multi-row insert of the jobs and one of their ``pending`` events. Each caller is
answered only after that commit (a 201 still means the job is committed) and with its own answer (its
record, or the error its submit alone would have raised). A lone submit is a batch of one.
"""

from __future__ import annotations

import asyncio

from skyline.cluster.control import ControlPlane
from skyline.cluster.records import JobRecord
from skyline.cluster.spec import JobRequest

Answer = tuple[JobRecord, bool]


class SubmitBatcher:
    """Group commit of `ControlPlane.submit` calls made on one event loop (the API server's)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self._waiting: list[tuple[JobRequest, str, asyncio.Future[Answer]]] = []

    async def submit(self, request: JobRequest, *, owner: str) -> Answer:
        """What `ControlPlane.submit` answers, once the batch holding this request is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((request, owner, future))
        if len(self._waiting) == 1:
            # After the callbacks already due: the other requests that arrived in this turn join first.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch = [w for w in self._waiting if not w[2].cancelled()]  # a caller gone: its job is not queued
        self._waiting = []
        try:
            answers = self.control.submit_many([(request, owner) for request, owner, _ in batch])
        except Exception as exc:  # no caller may wait forever
            answers = [exc] * len(batch)
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if future.cancelled():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
