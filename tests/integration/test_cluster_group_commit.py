"""Group commit of the API's submits (`SubmitBatcher`): submits that arrive together share one transaction,
yet each caller gets what its own submit would have answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from skyline.cluster import schema as t
from skyline.cluster.agent_executor import AgentExecutor
from skyline.cluster.clock import WallClock
from skyline.cluster.control import ControlConfig, ControlPlane
from skyline.cluster.records import JobRecord
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.cluster.submit_batch import SubmitBatcher
from skyline.core import Resources, Tier
from skyline.errors import ConfigError
from skyline.scheduling.policies import make_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    store = Store(f"sqlite:///{tmp_path / 'cluster.db'}")
    capacity = Resources.of(cpus=4, memory_mib=8192)
    store.nodes.register("n1", tier=Tier.DATACENTER, address="127.0.0.1", capacity=capacity, labels={})
    yield ControlPlane(store, AgentExecutor(store), make_policy("fifo"), WallClock(), ControlConfig())
    store.close()


def _together(
    control: ControlPlane, requests: Sequence[JobRequest]
) -> list[tuple[JobRecord, bool] | Exception]:
    """Submit ``requests`` concurrently through one batcher (as the API's event loop does)."""
    batcher = SubmitBatcher(control)

    async def main() -> list[tuple[JobRecord, bool] | Exception]:
        calls = [batcher.submit(r, owner="alice") for r in requests]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    return asyncio.run(main())


def _count_group_commits(control: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    submit_many = control.store.jobs.submit_many

    def counted(requests: Sequence[tuple[JobRequest, str]]) -> list[tuple[JobRecord, bool]]:
        sizes.append(len(requests))
        return submit_many(requests)

    monkeypatch.setattr(control.store.jobs, "submit_many", counted)
    return sizes


def _pending_events(control: ControlPlane) -> list[str]:
    e = t.job_events.c
    query = sa.select(e.job_id).where(e.status == "pending").order_by(e.id)
    with control.store.db.read() as conn:
        return [row[0] for row in conn.execute(query)]


def test_submits_arriving_together_share_one_commit_and_a_repeated_key_gives_one_job(
    control: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier, _ = control.submit(JobRequest(command="true", idempotency_key="old"), owner="alice")
    commits = _count_group_commits(control, monkeypatch)
    requests = [
        JobRequest(command="echo a", idempotency_key="same"),
        JobRequest(command="echo b"),
        JobRequest(command="echo a", idempotency_key="same"),
        JobRequest(command="huge", resources=Resources.of(cpus=64)),  # no node could ever hold it
        JobRequest(command="echo c", idempotency_key="old"),
        JobRequest(command="echo a", idempotency_key="same"),
        JobRequest(command="echo d"),
    ]
    answers = _together(control, requests)
    assert commits == [6]  # the refused one is not written; the others in one transaction
    assert isinstance(answers[3], ConfigError)
    records = [a for a in answers if isinstance(a, tuple)]
    assert [created for _, created in records] == [True, True, False, False, False, True]
    same = {answers[i][0].id for i in (0, 2, 5) if isinstance(answers[i], tuple)}
    assert len(same) == 1
    assert isinstance(answers[4], tuple) and answers[4][0].id == earlier.id
    new = [record for record, created in records if created]
    assert [r.seq for r in new] == sorted(r.seq for r in new)  # queued in arrival order
    assert [r.id for r in control.store.jobs.find()] == [earlier.id, *(r.id for r in new)]
    assert _pending_events(control) == [earlier.id, *(r.id for r in new)]  # one event each, in order


def test_a_bad_request_in_a_group_commit_costs_only_its_own_submit(control: ControlPlane) -> None:
    bad = JobRequest(command="true", labels={"team": object()})  # type: ignore[dict-item]  # not JSON
    answers = _together(control, [JobRequest(command="echo 1"), bad, JobRequest(command="echo 2")])
    assert isinstance(answers[1], Exception)
    good = [a[0] for a in (answers[0], answers[2]) if isinstance(a, tuple) and a[1]]
    assert [r.command for r in good] == ["echo 1", "echo 2"]
    assert [r.id for r in control.store.jobs.find()] == [r.id for r in good]  # nothing of the failed batch
    assert _pending_events(control) == [r.id for r in good]


def test_a_lone_submit_is_a_batch_of_one(control: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    commits = _count_group_commits(control, monkeypatch)
    [answer] = _together(control, [JobRequest(command="true", idempotency_key="k")])
    [again] = _together(control, [JobRequest(command="true", idempotency_key="k")])
    assert isinstance(answer, tuple) and isinstance(again, tuple)
    assert answer[1] and not again[1] and again[0].id == answer[0].id
    assert commits == [1, 1]
